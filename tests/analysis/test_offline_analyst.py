"""Indicators by hand and on real bars; the offline analyst's decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from kitrade.analysis.indicators import atr, compute_indicators, macd, rsi
from kitrade.analysis.offline import offline_answer
from kitrade.analysis.schemas import AnalysisContext, Passage


def test_indicators_by_hand():
    flat = pd.Series([5.0] * 60)
    rising = pd.Series(np.arange(1.0, 61.0))
    assert rsi(flat).iloc[-1] != rsi(flat).iloc[-1]  # NaN: no moves at all
    assert rsi(rising).iloc[-1] == 100.0
    line, _sig, hist = macd(flat)
    assert line.iloc[-1] == 0.0 and hist.iloc[-1] == 0.0
    high, low = pd.Series([11.0] * 30), pd.Series([9.0] * 30)
    assert atr(high, low, pd.Series([10.0] * 30)).iloc[-1] == 2.0
    assert rsi(pd.Series([1.0, 2.0, 3.0])).isna().all()  # too few bars


def test_indicators_on_real_bars():
    from backtesting.test import EURUSD

    bars = EURUSD.rename(columns=str.lower).reset_index(names="ts")
    ind = compute_indicators(bars)
    assert 0 <= ind["rsi_14"] <= 100 and ind["atr_14"] > 0 and ind["sma_200"] > 0
    assert all(v is None or np.isfinite(v) for v in ind.values())
    assert compute_indicators(bars.iloc[:10])["sma_50"] is None


def _ctx(
    move: float,
    rmae: float | None,
    *,
    forecast: bool = True,
    rsi_value: float = 50.0,
    beats: bool | None = None,
):
    last = 100.0
    pts = [
        {
            "ds": f"2024-01-01T{h:02d}:00:00Z",
            "mean": last * (1 + move * (h + 1) / 24),
            "lo_80": last * (1 + move * (h + 1) / 24) - 0.2,
            "hi_80": last * (1 + move * (h + 1) / 24) + 0.2,
            "lo_95": 0.0,
            "hi_95": 1e9,
        }
        for h in range(24)
    ]
    return AnalysisContext(
        symbol="EURUSD",
        question="buy or sell?",
        timeframe="H1",
        last_bar=datetime(2024, 1, 1, tzinfo=UTC),
        last_close=last,
        indicators={
            "close": last,
            "rsi_14": rsi_value,
            "macd_hist": 0.0,
            "sma_50": last,
            "volatility_20": 0.001,
        },
        forecast={"version": "EURUSD-20240101T000000-abcdef", "horizon": 24, "points": pts}
        if forecast
        else None,
        evaluation={
            "model": {"rmae": rmae},
            "beats_naive": (rmae is not None and rmae < 1) if beats is None else beats,
            "dm_pvalue": 0.01 if rmae is not None and rmae < 1 else 0.4,
            "n_origins": 250,
        },
        passages=[
            Passage(id="risk#0", text="Use a stop loss; risk 1 %."),
            Passage(id="rsi#0", text="RSI above 70 is overbought."),
        ],
    )


def test_offline_decisions():
    up = offline_answer(_ctx(0.02, 0.8))
    assert up.recommendation == "buy" and up.confidence > 0.5
    down = offline_answer(_ctx(-0.02, 0.8))
    assert down.recommendation == "sell"
    unskilled = offline_answer(_ctx(0.02, 1.3))
    assert unskilled.recommendation == "hold" or unskilled.confidence <= 0.35
    assert any("no better than the naive" in r and "250 origins" in r for r in unskilled.risks)
    assert "no better than naive (relative MAE 1.300" in unskilled.rationale
    assert "beats naive (relative MAE 0.800, Diebold-Mariano p=0.01" in up.rationale
    # an rMAE below 1 that the test does not back is treated as no skill
    untested = offline_answer(_ctx(0.02, 0.95, beats=False))
    assert untested.confidence <= 0.35
    assert any("no better than the naive" in r for r in untested.risks)
    none = offline_answer(_ctx(0.0, None, forecast=False))
    assert none.recommendation == "hold" and any("no trained model" in r for r in none.risks)
    assert set(up.cited_source_ids) <= {"risk#0", "rsi#0"}
    assert all(f"[{i}]" in up.rationale for i in up.cited_source_ids)
    assert offline_answer(_ctx(0.02, 0.8)) == up  # deterministic
    assert "Not financial advice" in up.notice and up.backend == "offline"
