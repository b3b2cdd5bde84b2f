"""Backtest persistence and orchestration on a real PostgreSQL and a real local Ray cluster.

These tests need no strategy engine: they cover the tables, the forecasts a
backtest computes, stores and reuses, and the failure path (which stops
before the engine). Runs that end in ``done`` are in
``test_backtests_run.py``, which needs the core package.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from kitrade.backtest.folds import make_folds
from kitrade.backtest.forecasts import FoldError, FoldJob
from kitrade.data import backtests as store
from kitrade.data.bars import ingest_bars
from kitrade.data.symbols import create_symbol
from kitrade.errors import NotFoundError, TooShortError
from kitrade.schemas import StrategySpec, SymbolIn
from kitrade.services import backtests as svc

TINY = {
    "max_steps": 8,
    "mlp_units": 16,
    "input_size": 24,
    "horizon": 6,
    "val_check_steps": 4,
    "windows_batch_size": 32,
    "batch_size": 8,
}


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    close = 50 + np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.05, n))
    return pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "open": close,
            "high": close + 0.1,
            "low": close - 0.1,
            "close": close,
            "volume": 1.0,
        }
    )


@pytest.fixture(scope="module")
def seeded(module_settings, db):
    import ray

    from kitrade.cluster import connect

    with db.connection() as conn:
        for i, name in enumerate(("SYNA", "SYNB")):
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="H1"))
            conn.commit()
            ingest_bars(conn, symbol=name, bars=synthetic(260, i))
    connect(num_cpus=4, num_gpus=1)
    yield module_settings.model_copy(update={"nhits_use_gpu": True})
    ray.shutdown()


def new_record(db, **overrides) -> store.BacktestRecord:
    fields = {
        "strategy_name": None,
        "spec": {"kind": "threshold", "params": {"edge": 0.001}},
        "symbols": ["SYNA", "SYNB"],
        "timeframe": "H1",
        "period_start": pd.Timestamp("2024-01-09 08:00", tz="UTC").to_pydatetime(),
        "period_end": None,
        "n_folds": 2,
        "model_overrides": TINY,
        "costs": {"commission_bps": 1.0},
    }
    with db.connection() as conn:
        return store.create_backtest(conn, **(fields | overrides))


# ---------------------------------------------------------------------------- tables
def test_backtest_rows_go_through_their_states(db) -> None:
    rec = new_record(db)
    assert rec.status == "queued"
    assert rec.progress == 0
    assert rec.result is None
    assert rec.model_overrides == TINY
    with db.connection() as conn:
        store.mark_running(conn, backtest_id=rec.id)
        store.set_progress(conn, backtest_id=rec.id, progress=0.5)
        mid = store.get_backtest(conn, backtest_id=rec.id)
        assert (mid.status, mid.progress, mid.started_at is not None) == ("running", 0.5, True)
        store.mark_done(conn, backtest_id=rec.id, result={"metrics": {"sharpe": 1.2}})
        done = store.get_backtest(conn, backtest_id=rec.id)
        assert (done.status, done.progress, done.result) == (
            "done",
            1.0,
            {"metrics": {"sharpe": 1.2}},
        )
        store.mark_running(conn, backtest_id=rec.id)  # a rerun starts clean
        again = store.get_backtest(conn, backtest_id=rec.id)
        assert (again.status, again.result, again.finished_at) == ("running", None, None)
        store.mark_failed(conn, backtest_id=rec.id, error="SYNA fold 2 failed: boom")
        failed = store.get_backtest(conn, backtest_id=rec.id)
        assert (failed.status, failed.error, failed.result) == (
            "failed",
            "SYNA fold 2 failed: boom",
            None,
        )
        assert rec.id in [r.id for r in store.list_backtests(conn, status="failed")]
        assert rec.id not in [r.id for r in store.list_backtests(conn, status="done")]
        with pytest.raises(NotFoundError, match="backtest 999999 not found"):
            store.get_backtest(conn, backtest_id=999999)
        with pytest.raises(NotFoundError):
            store.set_progress(conn, backtest_id=999999, progress=0.1)


def test_status_is_checked_by_the_table(db) -> None:
    import psycopg

    rec = new_record(db)
    with pytest.raises(psycopg.errors.CheckViolation), db.connection() as conn:
        conn.execute("UPDATE backtests SET status = 'lost' WHERE id = %s", (rec.id,))


def test_forecast_rows_round_trip_and_upsert_idempotently(db) -> None:
    key = "k" + uuid.uuid4().hex[:10]
    issued = pd.date_range("2024-02-01", periods=3, freq="h", tz="UTC")
    frame = pd.DataFrame(
        {
            "symbol": "SYNA",
            "issued_at": np.repeat(issued, 2),
            "step": np.tile([1, 2], 3),
            "mean": np.arange(6, dtype=float),
            "lo_80": np.arange(6) - 1.0,
            "hi_80": np.arange(6) + 1.0,
            "lo_95": np.arange(6) - 2.0,
            "hi_95": np.arange(6) + 2.0,
            "model_version": "nhits-wf-x",
            "trained_through": pd.Timestamp("2024-01-31 23:00", tz="UTC"),
        }
    )
    with db.connection() as conn:
        assert store.store_forecasts(conn, fold_key=key, horizon=2, frame=frame) == 6
        store.store_forecasts(
            conn, fold_key=key, horizon=2, frame=frame.assign(mean=frame["mean"] + 10)
        )
        back = store.load_forecasts(conn, fold_key=key, symbol="SYNA")
        assert len(back) == 6
        pd.testing.assert_frame_equal(back, frame.assign(mean=frame["mean"] + 10))
        count = store.stored_decisions(
            conn, fold_key=key, symbol="SYNA", start=issued[0], end=issued[-1], horizon=2
        )
        assert count == 3
        assert (
            store.stored_decisions(
                conn, fold_key=key, symbol="SYNA", start=issued[0], end=issued[-1], horizon=3
            )
            == 0
        )
        assert store.load_forecasts(conn, fold_key="other", symbol="SYNA").empty


def test_existing_strategies_become_parameter_only(db, seeded) -> None:
    from kitrade.data.strategies import create_strategy

    with db.connection() as conn:
        create_strategy(
            conn, spec=StrategySpec(name="legacy", symbols=["SYNA"], parameters={"risk": 0.01})
        )
        assert store.strategy_kind(conn, name="legacy") == "parameters"
        with pytest.raises(NotFoundError):
            store.strategy_kind(conn, name="nope")


def test_the_kind_migration_marks_rows_that_existed_before_it(pg_server, tmp_path) -> None:
    import psycopg

    from kitrade.data.db import conninfo_for, ensure_database
    from kitrade.data.migrations import MIGRATIONS, migrate
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, pg_server, "t_" + uuid.uuid4().hex[:12])
    ensure_database(settings)
    with psycopg.connect(conninfo_for(settings), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for v in (1, 2):  # the schema as it was before strategy kinds
            with conn.transaction():
                MIGRATIONS[v].apply(conn)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s)", (v, MIGRATIONS[v].name)
                )
        conn.execute(
            "INSERT INTO strategies (name, symbols, timeframe) VALUES ('old', '{EURUSD}', 'H1')"
        )
        assert 3 in migrate(conn)
        assert conn.execute("SELECT kind FROM strategies WHERE name = 'old'").fetchone() == (
            "parameters",
        )


# ------------------------------------------------------------------- forecasts on Ray
def _clear_forecasts(db) -> None:
    with db.connection() as conn:
        conn.execute("TRUNCATE backtest_forecasts")


@pytest.mark.slow
def test_forecasts_are_computed_once_then_reused(seeded, db) -> None:
    _clear_forecasts(db)
    rec = new_record(db)
    seen: list[float] = []
    first = svc.prepare_forecasts(seeded, db, rec, progress=lambda f, _m: seen.append(f))
    assert sorted(first.computed) == [("SYNA", 1), ("SYNA", 2), ("SYNB", 1), ("SYNB", 2)]
    assert first.reused == []
    assert seen[0] == 0 and seen[-1] == 1.0 and len(seen) == 5
    n_dec = sum(f.n_decisions for fs in first.folds.values() for f in fs)
    assert len(first.forecasts) == n_dec * TINY["horizon"]

    second = svc.prepare_forecasts(seeded, db, rec)
    assert second.computed == []  # nothing refit: every fold came from the store
    assert sorted(second.reused) == sorted(first.computed)
    pd.testing.assert_frame_equal(second.forecasts, first.forecasts)

    # Another strategy over the same symbols, period and model reuses them too.
    other = new_record(db, spec={"kind": "band", "params": {}}, costs={})
    assert svc.prepare_forecasts(seeded, db, other).computed == []
    # A different model configuration does not pick up these forecasts.
    changed = new_record(db, symbols=["SYNA"], model_overrides=TINY | {"max_steps": 9})
    assert sorted(svc.prepare_forecasts(seeded, db, changed).computed) == [("SYNA", 1), ("SYNA", 2)]


@pytest.mark.slow
def test_an_interrupted_run_recomputes_only_the_missing_fold(seeded, db) -> None:
    rec = new_record(db)
    prepared = svc.prepare_forecasts(seeded, db, rec)
    fold = prepared.folds["SYNB"][1]
    key = FoldJob("SYNB", fold, _config(), prepared.bars["SYNB"]).key
    with db.connection() as conn:  # as if the run died before this fold was stored
        conn.execute(
            "DELETE FROM backtest_forecasts WHERE fold_key = %s AND symbol = 'SYNB'"
            " AND issued_at > %s",
            (key, fold.start + (fold.end - fold.start) / 2),
        )
    again = svc.prepare_forecasts(seeded, db, rec)
    assert again.computed == [("SYNB", 2)]
    pd.testing.assert_frame_equal(again.forecasts, prepared.forecasts)


def _config():
    from kitrade.backtest.folds import fold_config

    return fold_config("H1", **TINY)


@pytest.mark.slow
def test_a_failed_fold_marks_the_backtest_failed_and_stores_no_result(seeded, db) -> None:
    _clear_forecasts(db)
    from kitrade.data.bars import get_bars

    rec = new_record(db, symbols=["SYNB"])
    with db.connection() as conn:
        store.mark_done(conn, backtest_id=rec.id, result={"stale": True})
        index = pd.DatetimeIndex(get_bars(conn, symbol="SYNB")["ts"])
    # SYNB's second fold forced onto 30 training bars: fewer than NHITS needs.
    bad = make_folds(index, start=index[30], end=index[60], n_folds=2, min_train=1)
    seen: list[tuple[float, str]] = []
    with pytest.raises(FoldError, match=r"SYNB fold 1 \(.*\) failed"):
        svc.run_backtest(
            seeded, db, rec.id, folds={"SYNB": bad}, progress=lambda f, m: seen.append((f, m))
        )
    final = svc.get_backtest(db, backtest_id=rec.id)
    assert final.status == "failed"
    assert final.result is None
    assert "SYNB fold 1" in (final.error or "")
    assert "30 bars, expected at least" in (final.error or "")
    assert final.finished_at is not None
    assert rec.id in [r.id for r in svc.list_backtests(db, status="failed")]


def test_running_an_unknown_backtest_is_not_found(seeded, db) -> None:
    with pytest.raises(NotFoundError):
        svc.run_backtest(seeded, db, 987654)


def test_a_period_too_short_for_the_folds_fails_with_the_numbers(seeded, db) -> None:
    rec = new_record(db, period_start=pd.Timestamp("2024-01-01 10:00", tz="UTC").to_pydatetime())
    with pytest.raises(TooShortError, match=r"SYNA: 10 bars before the period start .* least 36"):
        svc.run_backtest(seeded, db, rec.id)
    final = svc.get_backtest(db, backtest_id=rec.id)
    assert final.status == "failed"
    assert "at least 36" in (final.error or "")


# ------------------------------------------------------------- create: bad input first
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, "InvalidInputError", "either a strategy name or an inline spec"),
        (
            {"strategy": "x", "spec": {"kind": "k", "params": {}}},
            "InvalidInputError",
            "not both",
        ),
        ({"strategy": "no-such-strategy"}, "NotFoundError", "no-such-strategy"),
        (
            {"spec": {"kind": 3}, "symbols": ["SYNA"], "timeframe": "H1"},
            "InvalidInputError",
            "spec",
        ),
        ({"spec": {"kind": "k", "params": {}}}, "InvalidInputError", "symbols and a timeframe"),
        (
            {"spec": {"kind": "k", "params": {}}, "symbols": ["NOPE"], "timeframe": "H1"},
            "NotFoundError",
            "NOPE",
        ),
        (
            {"spec": {"kind": "k"}, "symbols": ["SYNA"], "timeframe": "H1", "n_folds": 0},
            "InvalidInputError",
            "n_folds",
        ),
        (
            {
                "spec": {"kind": "buy_and_hold"},
                "symbols": ["SYNA"],
                "timeframe": "H1",
                "model_overrides": {"max_steps": 0},
            },
            "InvalidInputError",
            "model_overrides: max_steps",
        ),
    ],
)
def test_create_refuses_bad_input_and_records_nothing(seeded, db, kwargs, error, message) -> None:
    import kitrade.errors

    with db.connection() as conn:
        before = len(store.list_backtests(conn, limit=10_000))
    with pytest.raises(getattr(kitrade.errors, error), match=message):
        svc.create_backtest(db, **kwargs)
    with db.connection() as conn:
        assert len(store.list_backtests(conn, limit=10_000)) == before


# ---------------------------------------------------------------- the job entry point
def _job(settings, *args: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import app_env

    root = Path(__file__).parents[2]
    env = os.environ | app_env(settings, uuid.uuid4().hex * 2) | {"PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "backtest.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env=env,
    )


def test_the_job_reports_a_failed_backtest_and_exits_non_zero(seeded, db) -> None:
    rec = new_record(db, period_start=pd.Timestamp("2024-01-01 05:00", tz="UTC").to_pydatetime())
    res = _job(seeded, str(rec.id))
    assert res.returncode == 6, res.stderr[-2000:]
    assert f"backtest {rec.id}: failed (SYNA: 5 bars before the period start" in res.stdout
    assert svc.get_backtest(db, backtest_id=rec.id).status == "failed"


def test_the_job_refuses_bad_arguments(seeded) -> None:
    res = _job(seeded)
    assert res.returncode == 2
    assert "give a backtest id or --strategy NAME" in res.stderr
    res = _job(seeded, "987654")
    assert res.returncode == 3
    assert "backtest 987654 not found" in res.stderr


def test_a_long_fold_is_stored_in_batches_and_read_back_whole(db) -> None:
    key = "big" + uuid.uuid4().hex[:8]
    n, h = 2500, 24  # 60 000 rows: more than one upsert batch
    issued = pd.date_range("2020-01-01", periods=n, freq="h", tz="UTC")
    mean = np.random.default_rng(3).normal(size=n * h)
    frame = pd.DataFrame(
        {
            "symbol": "SYNB",
            "issued_at": np.repeat(issued, h),
            "step": np.tile(np.arange(1, h + 1), n),
            "mean": mean,
            "lo_80": mean - 1,
            "hi_80": mean + 1,
            "lo_95": mean - 2,
            "hi_95": mean + 2,
            "model_version": "nhits-wf-big",
            "trained_through": issued[0] - pd.Timedelta(hours=1),
        }
    )
    with db.connection() as conn:
        assert store.store_forecasts(conn, fold_key=key, horizon=h, frame=frame) == n * h
    with db.connection() as conn:
        back = store.load_forecasts(conn, fold_key=key, symbol="SYNB")
        full = store.stored_decisions(
            conn, fold_key=key, symbol="SYNB", start=issued[0], end=issued[-1], horizon=h
        )
    pd.testing.assert_frame_equal(back, frame)
    assert full == n


@pytest.mark.slow
def test_an_open_period_is_pinned_so_a_rerun_after_new_bars_reuses_the_folds(seeded, db) -> None:
    from kitrade.data.bars import get_bars

    with db.connection() as conn:
        conn.execute("INSERT INTO symbols (symbol, timeframe) VALUES ('SYNC', 'H1')")
        conn.commit()
        ingest_bars(conn, symbol="SYNC", bars=synthetic(200, 5))
    spec = {"kind": "forecast_threshold", "params": {"enter": 0.001}}
    costs = {"commission": 0.0001}
    rec = new_record(db, symbols=["SYNC"], period_start=None, spec=spec, costs=costs)
    done = svc.run_backtest(seeded, db, rec.id)  # a failing run fails the test
    assert (done.status, done.error) == ("done", None)
    pinned = svc.get_backtest(db, backtest_id=rec.id)
    with db.connection() as conn:
        last = get_bars(conn, symbol="SYNC")["ts"].iloc[-1]
    assert pinned.period_end == last
    with db.connection() as conn:  # new bars arrive after the first run
        ingest_bars(conn, symbol="SYNC", bars=synthetic(230, 5).iloc[200:])
    again = svc.prepare_forecasts(seeded, db, svc.get_backtest(db, backtest_id=rec.id))
    assert again.computed == []
    assert again.forecasts["issued_at"].max() == last
