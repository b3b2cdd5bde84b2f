"""Backtests run to ``done`` through the core package (strategies, engine, metrics, quality)
on real point-in-time NHITS forecasts, and rerun from the stored ones."""

from __future__ import annotations

import pandas as pd
import pytest

from kitrade.data import backtests as store
from kitrade.services import backtests as svc
from tests.services import test_backtests as base

TINY = base.TINY
seeded = base.seeded  # the module-scoped fixture: symbols, bars and a local Ray cluster
KIND = "forecast_threshold"
PARAMS: dict = {"enter": 0.0005, "allow_short": True}

pytestmark = pytest.mark.slow


def test_a_backtest_runs_to_done_with_its_result_and_reruns_from_stored_forecasts(
    seeded, db, tmp_path
) -> None:
    with db.connection() as conn:
        conn.execute("TRUNCATE backtest_forecasts")
    rec = svc.create_backtest(
        db,
        spec={"kind": KIND, "params": PARAMS},
        symbols=["SYNA", "SYNB"],
        timeframe="H1",
        start=pd.Timestamp("2024-01-09 08:00", tz="UTC").to_pydatetime(),
        n_folds=2,
        costs={"commission": 0.0001, "max_gross": 1.0},
        model_overrides=TINY,
    )
    assert rec.status == "queued"
    seen: list[float] = []
    done = svc.run_backtest(seeded, db, rec.id, progress=lambda f, _m: seen.append(f))
    assert done.status == "done"
    assert done.progress == 1.0
    assert seen == sorted(seen) and seen[-1] == 1.0
    result = done.result or {}
    for key in ("metrics", "equity", "drawdown", "trades", "folds", "lookahead_checks"):
        assert key in result, key
    checks = {c["name"]: c for c in result["lookahead_checks"]}
    assert set(checks) == {
        "every_decision_bar",
        "forecasts_unchanged_when_later_bars_change",
        "weights_unchanged_when_later_bars_change",
    }
    assert all(c["passed"] for c in checks.values()), checks
    assert checks["forecasts_unchanged_when_later_bars_change"]["detail"].startswith("0 of ")
    # SYNA/SYNB are asset class "other": annualised with the bars observed (24 a day here).
    assert result["metrics"]["strategy"]["bars_per_year"] == pytest.approx(365.25 * 24, rel=0.01)
    assert result["annualisation"]["basis"].startswith("observed")
    assert result["lag_test"]["kind"] == "diagnostic" and "meaning" in result["lag_test"]
    assert [f["index"] for f in result["folds"] if f["symbol"] == "SYNA"] == [1, 2]
    for name in ("strategy", "buy_and_hold", "naive"):
        assert result["metrics"][name]["n_bars"] > 0, name
    assert result["lag_test"]["total_return"] == result["metrics"]["strategy"]["total_return"]
    assert "step_1" in result["quality"]
    first = pd.Timestamp(min(f["start"] for f in result["folds"]))
    assert pd.Timestamp(result["equity"][0][0]) == first  # the curve starts at the period
    assert result["forecast_folds"] == {"computed": 4, "reused": 0}

    again = svc.run_backtest(seeded, db, rec.id)
    assert again.status == "done"
    assert (again.result or {})["forecast_folds"] == {"computed": 0, "reused": 4}
    assert (again.result or {})["metrics"] == result["metrics"]
    with db.connection() as conn:
        assert store.get_backtest(conn, backtest_id=rec.id).error is None

    report = svc.write_report(seeded, db, backtest_id=rec.id, path=tmp_path / "r" / "bt.html")
    page = report.read_text(encoding="utf-8")
    assert "fig-equity" in page and "fig-trades-SYNA" in page
    assert "lag_test (diagnostic)" in page  # the lag test is shown, never as a pass
    assert "<script src=" not in page  # plotly inlined: the file works offline
    _report_states_its_settings(page)
    _a_report_without_its_forecasts_is_refused_not_retrained(seeded, db, again, tmp_path)


def _table(page: str, table_id: str) -> str:
    import re

    found = re.search(f'<table id="{table_id}">.*?</table>', page, re.S)
    assert found, table_id
    return found.group(0)


def _report_states_its_settings(page: str) -> None:
    """Costs, bars per year, the model's configuration and quality at each of the 6 steps."""
    import re

    costs = _table(page, "costs")
    for shown in ("commission", "0.0001", "financing", "borrow", "max_gross"):
        assert shown in costs, shown
    settings = _table(page, "settings")
    assert "bars per year" in settings and "model: max_steps" in settings
    steps = re.findall(r"<tr><td>(\d+)</td>", _table(page, "quality"))
    assert steps == ["1", "2", "3", "4", "5", "6"]


def _a_report_without_its_forecasts_is_refused_not_retrained(seeded, db, done, tmp_path) -> None:
    from kitrade.errors import ConflictError

    folds = (done.result or {})["folds"]
    fold = next(f for f in folds if (f["symbol"], f["index"]) == ("SYNB", 2))
    with db.connection() as conn:
        conn.execute(
            "DELETE FROM backtest_forecasts WHERE symbol = 'SYNB' AND issued_at >= %s",
            (pd.Timestamp(fold["start"]).to_pydatetime(),),
        )
        left = conn.execute("SELECT count(*) FROM backtest_forecasts").fetchone()[0]
    with pytest.raises(ConflictError, match=r"SYNB fold 2 .*scripts/backtest\.py"):
        svc.write_report(seeded, db, backtest_id=done.id, path=tmp_path / "missing.html")
    with db.connection() as conn:  # nothing was computed or stored again
        assert conn.execute("SELECT count(*) FROM backtest_forecasts").fetchone()[0] == left
    assert not (tmp_path / "missing.html").exists()


def test_costs_are_checked_against_the_symbols_and_commission_follows_the_asset_class(
    seeded, db
) -> None:
    from kitrade.data.bars import ingest_bars
    from kitrade.data.symbols import create_symbol
    from kitrade.errors import InvalidInputError
    from kitrade.schemas import SymbolIn

    with db.connection() as conn:
        create_symbol(conn, spec=SymbolIn(symbol="SYNF", timeframe="H1", asset_class="fx"))
        conn.commit()
        ingest_bars(conn, symbol="SYNF", bars=base.synthetic(260, 7))
    args = {"spec": {"kind": KIND, "params": PARAMS}, "timeframe": "H1", "model_overrides": TINY}
    before = len(svc.list_backtests(db))
    with pytest.raises(InvalidInputError, match="spread: GOOG"):
        svc.create_backtest(db, symbols=["SYNA"], costs={"spread": {"GOOG": 0.001}}, **args)
    assert len(svc.list_backtests(db)) == before
    rec = svc.create_backtest(
        db, symbols=["SYNA", "SYNF"], costs={"spread": {"SYNF": 0.00005}}, **args
    )
    assert rec.costs["commission"] == {"*": 0.0005, "SYNA": 0.0005, "SYNF": 0.00002}
    assert rec.costs["spread"] == {"SYNF": 0.00005}  # the other symbols keep the default


def test_a_stored_legacy_strategy_is_refused_as_parameter_only(seeded, db) -> None:
    from kitrade.data.strategies import create_strategy
    from kitrade.errors import InvalidInputError
    from kitrade.schemas import StrategySpec

    with db.connection() as conn:
        create_strategy(conn, spec=StrategySpec(name="legacy-run", symbols=["SYNA"]))
    with pytest.raises(InvalidInputError, match="parameter-only"):
        svc.create_backtest(db, strategy="legacy-run", n_folds=1, model_overrides=TINY)


def test_negative_costs_are_refused_before_anything_is_recorded(seeded, db) -> None:
    from kitrade.errors import InvalidInputError

    before = len(svc.list_backtests(db))
    with pytest.raises(InvalidInputError, match="commission"):
        svc.create_backtest(
            db,
            spec={"kind": KIND, "params": PARAMS},
            symbols=["SYNA"],
            timeframe="H1",
            costs={"commission": -0.001},
            model_overrides=TINY,
        )
    assert len(svc.list_backtests(db)) == before


def test_symbols_of_another_timeframe_are_refused_with_their_timeframes(seeded, db) -> None:
    from kitrade.data.symbols import create_symbol
    from kitrade.errors import InvalidInputError
    from kitrade.schemas import SymbolIn

    with db.connection() as conn:
        create_symbol(conn, spec=SymbolIn(symbol="SYND", timeframe="D1"))
    with pytest.raises(InvalidInputError, match="SYND has D1 bars"):
        svc.create_backtest(
            db, spec={"kind": KIND, "params": PARAMS}, symbols=["SYNA", "SYND"], timeframe="H1"
        )


def _count(db, sql: str, *args: object) -> int:
    with db.connection() as conn:
        return int(conn.execute(sql, args).fetchone()[0])


@pytest.mark.parametrize(
    ("kind", "params"),
    [("buy_and_hold", {}), ("sma_cross", {"fast": 3, "slow": 8}), ("naive_direction", {})],
)
def test_a_baseline_runs_on_a_history_too_short_for_nhits_and_trains_nothing(
    seeded, db, kind, params
) -> None:
    from kitrade.data.bars import ingest_bars
    from kitrade.data.symbols import create_symbol
    from kitrade.schemas import SymbolIn
    from kitrade.training.spec import default_config, min_bars

    n = 40
    assert n < min_bars(default_config("H1"), evaluate=False)  # too short for a fold model
    with db.connection() as conn:
        if not _count(db, "SELECT count(*) FROM symbols WHERE symbol = %s", "SHRT"):
            create_symbol(conn, spec=SymbolIn(symbol="SHRT", timeframe="H1", asset_class="crypto"))
            conn.commit()
            ingest_bars(conn, symbol="SHRT", bars=base.synthetic(n, 7))
    forecasts = _count(db, "SELECT count(*) FROM backtest_forecasts")
    rec = svc.create_backtest(
        db, spec={"kind": kind, "params": params}, symbols=["SHRT"], timeframe="H1", n_folds=4
    )
    done = svc.run_backtest(seeded, db, rec.id)
    assert done.status == "done", done.error
    result = done.result or {}
    assert result["folds"] == [] and result["forecast_folds"] == {"computed": 0, "reused": 0}
    assert result["metrics"]["strategy"]["n_bars"] == n  # the period starts at the first bar
    assert result["metrics"]["strategy"]["bars_per_year"] == 365 * 24  # crypto's calendar
    assert [c["name"] for c in result["lookahead_checks"]] == [
        "weights_unchanged_when_later_bars_change"
    ]
    assert result["lookahead_checks"][0]["passed"] is True
    assert _count(db, "SELECT count(*) FROM backtest_forecasts") == forecasts
    if _count(db, "SELECT (to_regclass('model_versions') IS NOT NULL)::int"):
        assert _count(db, "SELECT count(*) FROM model_versions WHERE symbol = %s", "SHRT") == 0
