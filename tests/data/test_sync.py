"""Sync from the bundled sample and from failing sources, against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pandas as pd

from kitrade.data.bars import bar_stats, get_bars
from kitrade.data.events import BARS_INGESTED, list_events
from kitrade.data.sources.base import MarketDataSource, RawFrame
from kitrade.data.sources.sample import SampleSource
from kitrade.data.sync import sync_symbols
from kitrade.data.sync_state import get_sync_state
from kitrade.errors import UpstreamError
from kitrade.schemas import SymbolIn


def test_sample_sync_loads_real_bars_once(clean_db):
    import backtesting.test as bt

    report = sync_symbols(clean_db, SampleSource())
    assert report.ok
    assert {r.symbol: r.new_bars for r in report.results} == {
        "BTCUSD": len(bt.BTCUSD),
        "EURUSD": len(bt.EURUSD),
        "GOOG": len(bt.GOOG),
    }
    with clean_db.connection() as conn:
        eur = get_bars(conn, symbol="EURUSD")
        events = list_events(conn, kind=BARS_INGESTED)
        state = get_sync_state(conn, symbol="EURUSD")
    assert eur["close"].iloc[-1] == bt.EURUSD["Close"].iloc[-1]
    assert eur["ts"].iloc[0] == pd.Timestamp(bt.EURUSD.index[0], tz="UTC")
    assert state.status == "ok" and state.last_bar == eur["ts"].iloc[-1]
    ev = {e.symbol: e.payload for e in events}
    assert ev["EURUSD"]["count"] == len(bt.EURUSD)
    assert ev["EURUSD"]["last_ts"] == eur["ts"].iloc[-1].isoformat()

    again = sync_symbols(clean_db, SampleSource())
    assert {r.status for r in again.results} == {"up_to_date"}
    with clean_db.connection() as conn:
        assert len(list_events(conn, kind=BARS_INGESTED)) == 3  # no event without new bars
        assert sum(s.count for s in bar_stats(conn)) == len(bt.EURUSD) + len(bt.GOOG) + len(
            bt.BTCUSD
        )


class _Flaky(MarketDataSource):
    """A source whose BAD symbol fails like an upstream outage and whose others grow."""

    name = "flaky"

    def __init__(self, n: int) -> None:
        self.n = n

    def _list_symbols(self) -> list[SymbolIn]:
        return [SymbolIn(symbol=s, source="http") for s in ("AAA", "BAD", "ZZZ")]

    def _fetch(self, symbol: str, *, since: datetime | None) -> Iterator[RawFrame]:
        if symbol == "BAD":
            raise UpstreamError("upstream http://127.0.0.1:9 answered 503: maintenance")
        ts = pd.date_range("2024-01-01", periods=self.n, freq="h", tz="UTC")
        yield RawFrame(
            pd.DataFrame(
                {
                    "ts": ts,
                    "open": 1.0,
                    "high": 1.0,
                    "low": 1.0,
                    "close": range(self.n),
                    "volume": 0.0,
                }
            ),
            origin=symbol,
        )


def test_one_failing_symbol_does_not_stop_the_others_and_sync_is_incremental(clean_db):
    report = sync_symbols(clean_db, _Flaky(10))
    by = {r.symbol: r for r in report.results}
    assert by["BAD"].status == "failed" and "503" in by["BAD"].error
    assert by["AAA"].new_bars == 10 and by["ZZZ"].new_bars == 10
    assert not report.ok
    report2 = sync_symbols(clean_db, _Flaky(15))
    by2 = {r.symbol: r for r in report2.results}
    # only the 5 new bars travel: the source was asked for ts > last stored bar
    assert by2["AAA"].rows == 5 and by2["AAA"].new_bars == 5
    with clean_db.connection() as conn:
        bad = get_sync_state(conn, symbol="BAD")
        assert bad.status == "failed" and "maintenance" in bad.error
        events = list_events(conn, kind=BARS_INGESTED, symbol="AAA")
        assert [e.payload["count"] for e in events] == [10, 5]
        assert bar_stats(conn, symbol="BAD") == []
