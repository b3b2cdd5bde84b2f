"""Fixtures of the service tests: an upstream API stand-in and settings that sync from it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from psycopg.types.json import Jsonb

from tests.fakes.upstream import FakeUpstream, synthetic_bars

#: the upstream's full history; tests serve a prefix of it, then more
TRUTH = synthetic_bars(300)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """The market-data API on 127.0.0.1, serving EURUSD's first 200 bars."""
    with FakeUpstream({"EURUSD": TRUTH.iloc[:200].reset_index(drop=True)}) as up:
        yield up


@pytest.fixture
def sync_settings(module_settings: object, upstream: FakeUpstream) -> object:
    """The module's settings with the upstream API as the market-data source."""
    return module_settings.model_copy(update={"easyinsight_api_url": upstream.url})  # type: ignore[attr-defined]


def serve_more(up: FakeUpstream, n: int) -> None:
    """Let the upstream serve EURUSD's first ``n`` bars."""
    up.data["EURUSD"] = TRUTH.iloc[:n].reset_index(drop=True)


def store_answer(db: object, *, bar: int, horizon: int, rec: str = "buy") -> int:
    """An analysis answer about EURUSD given at bar ``bar`` for ``horizon`` bars; its id."""
    last_bar: datetime = TRUTH["ts"].iloc[bar].to_pydatetime()
    with db.connection() as conn:  # type: ignore[attr-defined]
        return int(
            conn.execute(
                "INSERT INTO analysis_answers (symbol, question, backend, last_bar, last_close,"
                " horizon_bars, recommendation, confidence, answer)"
                " VALUES ('EURUSD', 'q', 'offline', %s, %s, %s, %s, 0.5, %s) RETURNING id",
                (last_bar, float(TRUTH["close"].iloc[bar]), horizon, rec, Jsonb({})),
            ).fetchone()[0]
        )


def outcome(db: object, answer_id: int) -> dict | None:
    """The stored outcome of an answer (None while unscored)."""
    with db.connection() as conn:  # type: ignore[attr-defined]
        row = conn.execute(
            "SELECT outcome FROM analysis_answers WHERE id = %s", (answer_id,)
        ).fetchone()
    return row[0]


def reset(db: object) -> None:
    """Empty every table the sync and its follow-ups write."""
    with db.connection() as conn:  # type: ignore[attr-defined]
        conn.execute(
            "TRUNCATE bars, symbols, strategies, sync_state, events, analysis_answers"
            " RESTART IDENTITY CASCADE"
        )
