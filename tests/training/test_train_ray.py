"""train_all on a real local Ray cluster with tiny NHITS configurations.

The cluster has 4 logical CPUs and 1 logical GPU (this machine has no real
one): with NHITS_USE_GPU=1 each task asks for 0.4 GPU, so two run at once
and a third waits, while the task itself trains on the CPU torch has.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from kitrade.data.bars import ingest_bars
from kitrade.data.progress import load_run
from kitrade.data.symbols import create_symbol
from kitrade.schemas import SymbolIn
from kitrade.training.registry import active_version, list_versions

pytestmark = pytest.mark.slow
TINY = {
    "max_steps": 40,
    "mlp_units": 32,
    "val_check_steps": 10,
    "windows_batch_size": 64,
    "input_size": 48,
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
def cluster(module_settings):
    import ray

    from kitrade.cluster import connect

    settings = module_settings.model_copy(
        update={"nhits_use_gpu": True, "train_max_attempts": 2, "promotion_tolerance": 10.0}
    )
    connect(num_cpus=4, num_gpus=1)
    yield settings
    ray.shutdown()


@pytest.fixture(scope="module")
def seeded(cluster, db):
    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
        for name in ("SYNA", "SYNB", "SYNC"):
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="H1"))
        create_symbol(conn, spec=SymbolIn(symbol="TINY", timeframe="H1", active=False))
        conn.commit()
        for i, name in enumerate(("SYNA", "SYNB", "SYNC")):
            ingest_bars(conn, symbol=name, bars=synthetic(400, i))
        ingest_bars(conn, symbol="TINY", bars=synthetic(30, 9))
    return cluster


def _overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_train_all_fractional_gpus_two_at_once_third_waits(seeded, db):
    from kitrade.training.runs import train_all
    from kitrade.training.tasks import task_resources

    assert task_resources(seeded) == {"num_cpus": 1, "num_gpus": 0.4}
    report = train_all(seeded, force=True, overrides=TINY)
    assert report.status == "done", report
    assert [r.status for r in report.results] == ["done"] * 3
    with db.connection() as conn:
        run = load_run(conn, run_id=report.run_id)
        for r in report.results:
            assert active_version(conn, symbol=r.symbol).version == r.version
            assert r.metrics["model"]["rmae"] is not None and r.metrics["naive"]["rmae"] == 1.0
            assert r.metrics["model"]["mase"] is not None and r.metrics["n_origins"] >= 2
            assert r.metrics["verdict"] in ("beats naive", "no better than naive")
    assert {s.state for s in run.symbols} == {"done"}
    assert all("gpu x0.4" in (s.detail or "") or s.version for s in run.symbols)
    spans = [(s.started_at.timestamp(), s.ended_at.timestamp()) for s in run.symbols]
    assert _overlap(spans) == 2, spans  # 0.4 + 0.4 fit in one GPU, a third 0.4 does not
    first_end = sorted(e for _, e in spans)[0]
    assert sorted(s for s, _ in spans)[2] >= first_end - 0.5


def test_fresh_models_are_skipped_without_force(seeded, db):
    from kitrade.training.runs import train_all

    report = train_all(seeded, overrides=TINY)
    assert {r.status for r in report.results} == {"skipped"}
    assert all("covers the last bar" in r.reason for r in report.results)
    with db.connection() as conn:
        states = {s.symbol: s.state for s in load_run(conn, run_id=report.run_id).symbols}
    assert states == {"SYNA": "skipped", "SYNB": "skipped", "SYNC": "skipped"}


def test_too_short_symbol_fails_alone_and_is_not_retried(seeded, db):
    from kitrade.training.runs import train_all

    report = train_all(seeded, ["TINY", "SYNA"], force=True, overrides=TINY)
    by = {r.symbol: r for r in report.results}
    assert report.status == "partial"
    assert by["TINY"].status == "failed" and by["TINY"].attempts == 1
    assert "TINY: 30 bars, expected at least" in by["TINY"].error
    assert by["SYNA"].status == "done"
    with db.connection() as conn:
        tiny = {s.symbol: s for s in load_run(conn, run_id=report.run_id).symbols}["TINY"]
    assert tiny.state == "failed" and "30 bars" in tiny.error


def _wait_running(db, run_id: str, symbol: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.connection() as conn:
            try:
                run = load_run(conn, run_id=run_id)
            except Exception:  # noqa: BLE001 - run row not written yet
                run = None
        for s in run.symbols if run else []:
            if s.symbol == symbol and s.state == "running" and s.detail and "pid" in s.detail:
                return int(s.detail.rsplit("pid ", 1)[1])
        time.sleep(0.1)
    raise AssertionError(f"{symbol} never ran")


def test_killed_training_worker_is_retried_and_progress_survives_actor_kill(seeded, db, record):
    import ray

    from kitrade.training.actors import PROGRESS_ACTOR
    from kitrade.training.runs import train_all
    from kitrade.training.tasks import new_run_id

    run_id = new_run_id()
    slow = TINY | {"max_steps": 400, "early_stop_patience_steps": -1}
    result = {}
    t = threading.Thread(
        target=lambda: result.setdefault(
            "r", train_all(seeded, ["SYNB", "SYNC"], force=True, overrides=slow, run_id=run_id)
        )
    )
    t.start()
    pid = _wait_running(db, run_id, "SYNB")
    with db.connection() as conn:
        before = {s.symbol: s for s in load_run(conn, run_id=run_id).symbols}
    ray.kill(ray.get_actor(PROGRESS_ACTOR, namespace="kitrade"), no_restart=False)
    os.kill(pid, signal.SIGKILL)
    t_kill = time.monotonic()
    t.join(timeout=240)
    finished_s = time.monotonic() - t_kill
    assert not t.is_alive()
    report = result["r"]
    by = {r.symbol: r for r in report.results}
    assert by["SYNB"].status == "done" and by["SYNB"].attempts == 2
    assert by["SYNC"].status == "done" and by["SYNC"].attempts == 1
    with db.connection() as conn:
        after = {s.symbol: s for s in load_run(conn, run_id=run_id).symbols}
        versions = list_versions(conn, symbol="SYNB")
    assert after["SYNB"].attempt == 2 and after["SYNB"].state == "done"
    assert after["SYNC"].step >= before["SYNC"].step  # nothing went backwards
    assert len({v.version for v in versions}) == len(versions)  # no duplicate rows
    record("training task and progress actor killed mid-training", True, 0, finished_s)


def test_tune_sweep_records_trials_and_best_goes_through_the_gate(seeded, db):
    from kitrade.training.tune import sweep, train_best

    base = TINY | {"max_steps": 20, "val_check_steps": 5}
    space = {
        "learning_rate": {"type": "loguniform", "low": 1e-3, "high": 1e-2},
        "mlp_units": {"type": "choice", "values": [16, 32]},
    }
    result = sweep(seeded, "SYNA", num_samples=2, base=base, space=space)
    assert result.trials == 2 and result.best_val_loss is not None
    assert result.best_config["mlp_units"] in (16, 32)
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT count(*), count(val_loss) FROM tune_results WHERE sweep_id = %s",
            (result.sweep_id,),
        ).fetchone()
    assert rows == (2, 2)
    report = train_best(seeded, result, base=base)
    r = report.results[0]
    assert r.status == "done" and r.version and r.reason
    with db.connection() as conn:
        run = load_run(conn, run_id=report.run_id)
        version = next(v for v in list_versions(conn, symbol="SYNA") if v.version == r.version)
    assert run.trigger == f"tune:{result.sweep_id}"
    assert version.config["mlp_units"] == result.best_config["mlp_units"]
    assert version.status in ("active", "rejected")


def test_tune_sweep_picks_by_the_bands_interval_score_when_asked(seeded):
    from kitrade.errors import InvalidInputError
    from kitrade.training.tune import sweep

    base = TINY | {"max_steps": 10, "val_check_steps": 5}
    space = {"mlp_units": {"type": "choice", "values": [16, 32]}}
    result = sweep(
        seeded, "SYNB", num_samples=2, base=base, space=space, objective="interval_score"
    )
    scored = [r["interval_score"] for r in result.results if r["interval_score"] is not None]
    # a trial ASHA stops early by its validation loss never reaches the evaluation
    assert result.objective == "interval_score" and len(scored) >= 1
    assert result.best_interval_score == min(scored) > 0
    best = next(r for r in result.results if r["interval_score"] == min(scored))
    assert result.best_config == best["config"]
    with pytest.raises(InvalidInputError, match="objective"):
        sweep(seeded, "SYNB", num_samples=1, base=base, space=space, objective="sharpe")


def test_scheduler_retrains_on_new_bars_event_and_records_why(seeded, db):
    import ray

    from kitrade.data.sources.base import MarketDataSource, RawFrame
    from kitrade.data.sync import sync_symbols
    from kitrade.training.retrain import get_retrain_scheduler, list_triggers
    from kitrade.training.runs import train_all

    train_all(seeded, ["SYNA", "SYNB", "SYNC"], force=True, overrides=TINY)
    with db.connection() as conn:
        before = active_version(conn, symbol="SYNC").version

    class More(MarketDataSource):
        name = "more"

        def _list_symbols(self):
            return []

        def _fetch(self, symbol, *, since):
            yield RawFrame(synthetic(430, 2).iloc[400:], origin="more")

    sync_symbols(db, More(), ["SYNC"], register=False)
    scheduler = get_retrain_scheduler(seeded, TINY)
    out = ray.get(scheduler.check_now.remote(use_drift=False), timeout=240)
    assert [(t["symbol"], t["reason"]) for t in out["triggers"]] == [("SYNC", "new_bars")]
    with db.connection() as conn:
        run = load_run(conn, run_id=out["run_id"])
        after = active_version(conn, symbol="SYNC")
        stored = list_triggers(conn, symbol="SYNC")
        newest = list_versions(conn, symbol="SYNC")[0]
    assert run.trigger == "new_bars" and [s.symbol for s in run.symbols] == ["SYNC"]
    assert stored[0]["reason"] == "new_bars" and stored[0]["run_id"] == out["run_id"]
    assert newest.data_end > datetime_of(synthetic(400, 2)["ts"].iloc[-1])
    assert after.version != before or newest.status == "rejected"
    again = ray.get(scheduler.check_now.remote(use_drift=False), timeout=60)
    assert again["triggers"] == []  # the new model covers the new bars


def datetime_of(ts):
    return ts.to_pydatetime()
