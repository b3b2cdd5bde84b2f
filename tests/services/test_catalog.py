"""The catalog use cases, and the data deployment as a thin adapter over them."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from kitrade.data.bars import ingest_bars
from kitrade.data.symbols import create_symbol
from kitrade.errors import NotFoundError
from kitrade.schemas import SymbolIn
from kitrade.services import catalog
from tests.conftest import app_env
from tests.fakes.upstream import synthetic_bars
from tests.services.conftest import reset

N = catalog.DEFAULT_BARS + 20  # more than a request without count or range gets
TRUTH = synthetic_bars(N)


@pytest.fixture
def market(db):
    reset(db)
    with db.connection() as conn:
        create_symbol(conn, spec=SymbolIn(symbol="EURUSD", timeframe="H1"))
    with db.connection() as conn:
        ingest_bars(conn, symbol="EURUSD", bars=TRUTH)
    return db


def test_bars_picks_latest_range_or_resampled_query(market):
    default = catalog.bars(market, symbol="EURUSD")
    assert list(default["ts"]) == list(TRUTH["ts"].iloc[-catalog.DEFAULT_BARS :])
    last5 = catalog.bars(market, symbol="EURUSD", last=5)
    assert list(last5["ts"]) == list(TRUTH["ts"].iloc[-5:])

    start, end = TRUTH["ts"].iloc[10], TRUTH["ts"].iloc[20]  # end is exclusive
    ranged = catalog.bars(market, symbol="EURUSD", start=start, end=end)
    assert list(ranged["ts"]) == list(TRUTH["ts"].iloc[10:20])
    assert len(catalog.bars(market, symbol="EURUSD", start=start, end=end, last=3)) == 3

    h4 = catalog.bars(market, symbol="EURUSD", timeframe="H4", last=2)
    assert len(h4) == 2
    last_bucket = TRUTH["ts"].iloc[-1].floor("4h")
    assert h4["ts"].iloc[-1] == last_bucket
    in_bucket = TRUTH[TRUTH["ts"] >= last_bucket]
    assert h4["close"].iloc[-1] == pytest.approx(in_bucket["close"].iloc[-1])
    assert h4["high"].iloc[-1] == pytest.approx(in_bucket["high"].max())


def test_bars_of_an_unknown_symbol_is_not_found(market):
    with pytest.raises(NotFoundError, match="NOPE"):
        catalog.bars(market, symbol="NOPE", last=5)


def test_has_bars_tells_an_empty_store(market, db):
    assert catalog.has_bars(market)
    reset(db)
    assert not catalog.has_bars(db)


def test_data_deployment_answers_with_the_catalog_service(market, module_settings, monkeypatch):
    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.data import DataDeployment

    for key, value in app_env(module_settings, "k" * 24).items():
        monkeypatch.setenv(key, value)
    dep = DataDeployment(AppArgs())
    try:
        got = asyncio.run(dep.bars("EURUSD", 5, None, None, "H4"))["ok"]
        want = catalog.bars(market, symbol="EURUSD", last=5, timeframe="H4")
        assert [r["ts"] for r in got] == [t.isoformat() for t in want["ts"]]
        assert [r["close"] for r in got] == pytest.approx(list(want["close"]))
        default = asyncio.run(dep.bars("EURUSD", None, None, None, None))["ok"]
        assert len(default) == catalog.DEFAULT_BARS
        missing = asyncio.run(dep.bars("NOPE", 5, None, None, None))
        assert missing["error"]["class"] == "NotFoundError" and missing["error"]["status"] == 404
        (sym,) = asyncio.run(dep.list_symbols())["ok"]
        assert sym["symbol"] == "EURUSD" and sym["bars"] == N
        assert asyncio.run(dep.ping())["ok"]["bars_storage"] in ("hypertable", "table")
    finally:
        dep._db.close()


def test_ranged_rows_are_the_stored_rows(market):
    ranged = catalog.bars(
        market, symbol="EURUSD", start=TRUTH["ts"].iloc[0], end=TRUTH["ts"].iloc[5]
    )
    pd.testing.assert_frame_equal(
        ranged.reset_index(drop=True)[["open", "close"]],
        TRUTH.iloc[:5].reset_index(drop=True)[["open", "close"]],
        check_dtype=False,
    )
