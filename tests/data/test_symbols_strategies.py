"""Symbols and strategies CRUD and validation."""

from __future__ import annotations

import pandas as pd
import pydantic
import pytest

from kitrade.data.bars import ingest_bars
from kitrade.data.strategies import (
    create_strategy,
    delete_strategy,
    get_strategy,
    list_strategies,
    update_strategy,
)
from kitrade.data.symbols import (
    create_symbol,
    delete_symbol,
    get_symbol,
    list_symbols,
    update_symbol,
)
from kitrade.errors import ConflictError, InvalidInputError, NotFoundError
from kitrade.schemas import StrategySpec, StrategyUpdate, SymbolIn, SymbolUpdate


def test_symbol_crud_round_trip(clean_db):
    with clean_db.connection() as conn:
        created = create_symbol(
            conn, spec=SymbolIn(symbol="EURUSD", timeframe="H1", asset_class="fx")
        )
        assert created.bars == 0 and created.last_close is None
        with pytest.raises(ConflictError, match="already exists"):
            create_symbol(conn, spec=SymbolIn(symbol="EURUSD"))
        updated = update_symbol(
            conn, symbol="EURUSD", changes=SymbolUpdate(description="euro", active=False)
        )
        assert (updated.description, updated.active, updated.timeframe) == ("euro", False, "H1")
        assert [s.symbol for s in list_symbols(conn)] == ["EURUSD"]
        assert list_symbols(conn, active_only=True) == []
        with pytest.raises(NotFoundError):
            update_symbol(conn, symbol="NOPE", changes=SymbolUpdate(active=True))
        assert delete_symbol(conn, symbol="EURUSD") == 0
        with pytest.raises(NotFoundError):
            get_symbol(conn, symbol="EURUSD")


@pytest.mark.parametrize("bad", ["eurusd", "EUR/USD", "", "A" * 21, "X;DROP TABLE bars", "É"])
def test_symbol_pattern_rejects(bad):
    with pytest.raises(pydantic.ValidationError):
        SymbolIn(symbol=bad)


def test_symbol_lookup_with_bad_name_is_invalid_input(clean_db):
    with clean_db.connection() as conn, pytest.raises(InvalidInputError, match="expected 1-20"):
        get_symbol(conn, symbol="x'; --")


def test_timeframe_from_fixed_set():
    with pytest.raises(pydantic.ValidationError):
        SymbolIn(symbol="X", timeframe="H2")
    with pytest.raises(pydantic.ValidationError):
        SymbolIn(symbol="X", unknown_field=1)


def test_deleting_symbol_with_bars_needs_flag(clean_db):
    bars = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC"),
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": 1.5,
            "volume": 1.0,
        }
    )
    with clean_db.connection() as conn:
        create_symbol(conn, spec=SymbolIn(symbol="GOOG", timeframe="D1"))
        conn.commit()
        ingest_bars(conn, symbol="GOOG", bars=bars)
        sym = get_symbol(conn, symbol="GOOG")
        assert (sym.bars, sym.last_close) == (3, 1.5)
        with pytest.raises(ConflictError, match="has 3 bars"):
            delete_symbol(conn, symbol="GOOG")
        conn.rollback()
        assert get_symbol(conn, symbol="GOOG").bars == 3
        assert delete_symbol(conn, symbol="GOOG", delete_bars=True) == 3
        assert conn.execute("SELECT count(*) FROM bars WHERE symbol='GOOG'").fetchone()[0] == 0


def test_strategy_crud_and_validation(clean_db):
    with clean_db.connection() as conn:
        create_symbol(conn, spec=SymbolIn(symbol="EURUSD"))
        create_symbol(conn, spec=SymbolIn(symbol="GOOG", timeframe="D1"))
        spec = StrategySpec(
            name="ma-cross",
            symbols=["EURUSD"],
            timeframe="H1",
            parameters={"fast": 10, "slow": 30, "stop_loss": 0.01},
        )
        s = create_strategy(conn, spec=spec)
        assert s.parameters == {"fast": 10, "slow": 30, "stop_loss": 0.01}
        with pytest.raises(ConflictError):
            create_strategy(conn, spec=spec)
        with pytest.raises(NotFoundError, match="NOPE"):
            create_strategy(conn, spec=StrategySpec(name="x", symbols=["NOPE"]))
        u = update_strategy(
            conn, name="ma-cross", changes=StrategyUpdate(symbols=["EURUSD", "GOOG"])
        )
        assert u.symbols == ["EURUSD", "GOOG"] and u.parameters["fast"] == 10
        assert [x.name for x in list_strategies(conn, symbol="GOOG")] == ["ma-cross"]
        delete_strategy(conn, name="ma-cross")
        with pytest.raises(NotFoundError):
            get_strategy(conn, name="ma-cross")


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "", "symbols": ["EURUSD"]},
        {"name": "ok", "symbols": []},
        {"name": "ok", "symbols": ["EURUSD", "EURUSD"]},
        {"name": "ok", "symbols": ["EURUSD"], "parameters": {"bad key": 1}},
        {"name": "ok", "symbols": ["EURUSD"], "parameters": {"x": {"nested": "dict"}}},
        {"name": "ok", "symbols": ["EURUSD"], "timeframe": "H7"},
        {"name": "ok", "symbols": ["EURUSD"], "extra": 1},
    ],
)
def test_strategy_spec_rejects_bad_json(payload):
    with pytest.raises(pydantic.ValidationError):
        StrategySpec.model_validate(payload)


def test_strategy_update_with_explicit_nulls_changes_nothing_it_names():
    # found by the schemathesis run: a JSON null for parameters crashed the validator (500)
    upd = StrategyUpdate.model_validate({"parameters": None, "symbols": None})
    assert upd.model_dump(exclude_none=True) == {}
