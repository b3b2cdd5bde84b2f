"""Closed-loop scoring of stored answers against the bars that came after them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from psycopg.types.json import Jsonb

from kitrade.analysis.scoring import score_answers, score_summary
from kitrade.data.bars import ingest_bars
from kitrade.data.symbols import create_symbol
from kitrade.schemas import SymbolIn

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def market(db):
    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, analysis_answers CASCADE")
        create_symbol(conn, spec=SymbolIn(symbol="TEST", timeframe="H1"))
    with db.connection() as conn:
        close = 100.0 + np.arange(40, dtype=float)  # +1 per bar
        bars = pd.DataFrame(
            {
                "ts": [T0 + timedelta(hours=i) for i in range(40)],
                "open": close,
                "high": close + 0.5,
                "low": close - 0.5,
                "close": close,
                "volume": 1.0,
            }
        )
        ingest_bars(conn, symbol="TEST", bars=bars)
    return db


def _answer(db, rec: str, bar: int, horizon: int, forecast_end: float | None) -> int:
    with db.connection() as conn:
        return conn.execute(
            "INSERT INTO analysis_answers (symbol, question, backend, last_bar, last_close,"
            " horizon_bars, recommendation, confidence, answer, forecast_end)"
            " VALUES ('TEST', 'q', 'offline', %s, %s, %s, %s, 0.5, %s, %s) RETURNING id",
            (T0 + timedelta(hours=bar), 100.0 + bar, horizon, rec, Jsonb({}), forecast_end),
        ).fetchone()[0]


def _outcome(db, aid: int) -> dict | None:
    with db.connection() as conn:
        return conn.execute("SELECT outcome FROM analysis_answers WHERE id=%s", (aid,)).fetchone()[
            0
        ]


def test_scores_only_answers_whose_horizon_passed(market):
    buy = _answer(market, "buy", bar=10, horizon=5, forecast_end=120.0)  # exit bar 15: 115
    sell = _answer(market, "sell", bar=20, horizon=10, forecast_end=90.0)  # exit bar 30: 130
    hold = _answer(market, "hold", bar=0, horizon=4, forecast_end=None)  # exit bar 4: 104
    late = _answer(market, "buy", bar=35, horizon=5, forecast_end=200.0)  # needs bar 40: pending

    assert score_answers(market) == 3
    o = _outcome(market, buy)
    assert o["exit_close"] == 115.0 and o["realized_return"] == pytest.approx(115 / 110 - 1)
    assert o["hit"] is True and o["advice_return"] == pytest.approx(115 / 110 - 1)
    assert o["forecast_direction_return"] == pytest.approx(115 / 110 - 1)
    o = _outcome(market, sell)
    assert o["hit"] is False and o["advice_return"] == pytest.approx(-(130 / 120 - 1))
    assert o["forecast_direction_return"] == pytest.approx(-(130 / 120 - 1))
    o = _outcome(market, hold)
    assert o["hit"] is None and o["advice_return"] == 0.0 and o["forecast_direction_return"] is None
    assert _outcome(market, late) is None

    assert score_answers(market) == 0  # idempotent: scored answers stay as they are

    s = score_summary(market)
    assert (s.scored, s.pending) == (3, 1)
    assert s.advice.trades == 2 and s.advice.hit_rate == 0.5
    expected_total = (115 / 110 - 1) - (130 / 120 - 1)
    assert s.advice.total_return == pytest.approx(expected_total)
    assert s.advice.mean_return == pytest.approx(expected_total / 3)
    assert s.always_hold.total_return == 0.0 and s.always_hold.trades == 0
    assert s.forecast_direction.trades == 2
    assert s.beats_hold is (expected_total > 0)
    assert "3 answers scored" in s.verdict and "too few" in s.verdict


def test_new_bars_complete_a_pending_answer(market):
    aid = _answer(market, "sell", bar=38, horizon=3, forecast_end=None)
    assert score_answers(market, symbol="TEST") == 0
    with market.connection() as conn:
        more = pd.DataFrame(
            {
                "ts": [T0 + timedelta(hours=40 + i) for i in range(2)],
                "open": [90.0, 80.0],
                "high": [91.0, 81.0],
                "low": [89.0, 79.0],
                "close": [90.0, 80.0],
                "volume": 1.0,
            }
        )
        ingest_bars(conn, symbol="TEST", bars=more)
    assert score_answers(market, symbol="TEST") == 1
    o = _outcome(market, aid)
    assert o["exit_close"] == 80.0 and o["hit"] is True
    assert o["advice_return"] == pytest.approx(-(80 / 138 - 1))


def test_summary_with_nothing_scored(market):
    s = score_summary(market, symbol="TEST")
    assert s.scored == 0 and s.beats_hold is None and "nothing to judge" in s.verdict
