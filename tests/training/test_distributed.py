"""Large shared-model groups on Ray Train: 2 CPU workers (gloo) on a real 2-CPU local Ray cluster.

The group's coordinating task reserves no CPU, so both Ray Train workers fit on the two
CPUs; the fitted model comes back as a checkpoint under the models dir and is evaluated,
saved and registered like any shared model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kitrade.data.bars import get_bars, ingest_bars, to_training_frame
from kitrade.data.progress import load_run
from kitrade.data.symbols import create_symbol
from kitrade.errors import DistributedTrainingError
from kitrade.schemas import SymbolIn
from kitrade.training.nhits import FittedModel
from kitrade.training.registry import list_versions
from tests.training.test_shared import LEVELS, bars

pytestmark = pytest.mark.slow

#: Tiny and quick: a few steps, a small network.
TINY = {
    "max_steps": 6,
    "val_check_steps": 3,
    "mlp_units": 16,
    "windows_batch_size": 32,
    "input_size": 48,
}
SHORT = {"SHORTA": 400, "SHORTB": 60}  # one series far too short for input_size=48


@pytest.fixture(scope="module")
def cluster(module_settings, db):
    import ray

    from kitrade.cluster import connect

    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
        for i, name in enumerate(LEVELS):
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="H1"))
            conn.commit()
            ingest_bars(conn, symbol=name, bars=bars(name, 400, i))
        for name, n in SHORT.items():
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="M15"))
            conn.commit()
            short = bars("SHA", n, 5)
            short["ts"] = pd.date_range("2024-01-01", periods=n, freq="15min", tz="UTC")
            ingest_bars(conn, symbol=name, bars=short)
    connect(num_cpus=2)
    settings = module_settings.model_copy(
        update={"promotion_tolerance": 10.0, "train_distributed_workers": 2}
    )
    yield settings
    ray.shutdown()


@pytest.fixture(scope="module")
def distributed_run(cluster):
    """``train_all`` in shared scope with a threshold the H1 group (3 x 400 bars) passes."""
    from kitrade.training.runs import train_all

    settings = cluster.model_copy(update={"train_distributed_min_bars": 1000})
    started = time.monotonic()
    report = train_all(settings, list(LEVELS), force=True, overrides=TINY, scope="shared")
    return settings, report, time.monotonic() - started


def test_a_large_group_trains_on_two_ray_train_workers(distributed_run, db):
    _, report, seconds = distributed_run
    print(f"\nRay Train group fit (2 workers, {TINY['max_steps']} steps): {seconds:.1f} s")
    assert report.status == "done", report
    with db.connection() as conn:
        rows = [list_versions(conn, symbol=s)[0] for s in LEVELS]
    assert {v.scope for v in rows} == {"shared"} and {v.group for v in rows} == {"H1"}
    assert len({v.artifact_path for v in rows}) == 1 and "/shared/H1/" in rows[0].artifact_path
    ray_train = rows[0].config["ray_train"]
    assert ray_train["world_size"] == 2 and ray_train["workers"] == 2
    assert ray_train["series_trained"] == len(LEVELS)  # both ranks' shards: every series once
    assert ray_train["backend"] == "gloo" and rows[0].config["accelerator"] == "cpu"
    assert ray_train["resources_per_worker"] == {"CPU": 1.0}


def test_the_artifact_loads_and_forecasts_every_series(distributed_run, db):
    with db.connection() as conn:
        path = list_versions(conn, symbol="SHA")[0].artifact_path
        frames = [to_training_frame(s, get_bars(conn, symbol=s)) for s in LEVELS]
    model = FittedModel.load(Path(path))
    assert sorted(model.history["unique_id"].unique()) == sorted(LEVELS)
    assert "strategy" not in model.nf.models[0].trainer_kwargs  # plain single-process model
    for frame, forecast in zip(frames, model.predict_many(frames), strict=True):
        assert len(forecast) == model.config.horizon
        values = forecast[["mean", "lo_95", "hi_95"]].to_numpy()
        assert np.isfinite(values).all()
        assert forecast["ds"].iloc[0] > frame["ds"].iloc[-1]
        level = frame["y"].iloc[-1]  # each series forecast on its own scale (1.1 vs 30 000)
        assert abs(forecast["mean"].iloc[0] / level - 1) < 0.5, (frame["unique_id"].iloc[0], level)


def test_the_checkpoint_lives_under_the_models_dir(distributed_run):
    settings, report, _ = distributed_run
    runs = list((settings.resolved_models_dir / "ray_train").glob(f"H1-{report.run_id}-a1"))
    assert len(runs) == 1, runs
    checkpoints = [p for p in runs[0].glob("checkpoint_*") if p.is_dir()]
    assert len(checkpoints) == 1  # num_to_keep=1
    assert (checkpoints[0] / "model" / "meta.json").is_file()


def test_each_rank_evaluated_its_own_shard(distributed_run, db):
    """Both ranks wrote their shard's reports into the one checkpoint; each version has its own."""
    import json

    settings, report, _ = distributed_run
    (run,) = (settings.resolved_models_dir / "ray_train").glob(f"H1-{report.run_id}-a1")
    (checkpoint,) = [p for p in run.glob("checkpoint_*") if p.is_dir()]
    by_rank = {
        p.name: set(json.loads(p.read_text())) for p in checkpoint.glob("evaluation-rank*.json")
    }
    assert sorted(by_rank) == ["evaluation-rank0.json", "evaluation-rank1.json"]
    assert set().union(*by_rank.values()) == set(LEVELS)
    assert not by_rank["evaluation-rank0.json"] & by_rank["evaluation-rank1.json"]
    with db.connection() as conn:
        for s in LEVELS:
            metrics = list_versions(conn, symbol=s)[0].metrics
            assert metrics["model"]["rmae"] > 0 and metrics["n_origins"] > 0


def test_rank_zero_reported_progress_for_every_symbol(distributed_run, db):
    _, report, _ = distributed_run
    with db.connection() as conn:
        rows = {s.symbol: s for s in load_run(conn, run_id=report.run_id).symbols}
    assert set(rows) == set(LEVELS)
    for row in rows.values():
        assert row.state == "done" and row.step == TINY["max_steps"]
        assert row.train_loss is not None  # sent by the Lightning callback on rank 0


def test_a_group_below_the_threshold_takes_the_plain_path(cluster, db):
    from kitrade.training.runs import train_all

    settings = cluster.model_copy(update={"train_distributed_min_bars": 10_000})
    before = set((settings.resolved_models_dir / "ray_train").glob("*"))
    started = time.monotonic()
    report = train_all(settings, list(LEVELS), force=True, overrides=TINY, scope="shared")
    seconds = time.monotonic() - started
    print(f"\nplain group fit (one task, {TINY['max_steps']} steps): {seconds:.1f} s")
    assert report.status == "done", report
    with db.connection() as conn:
        rows = [list_versions(conn, symbol=s)[0] for s in LEVELS]
    assert {v.run_id for v in rows} == {report.run_id}
    assert all("ray_train" not in v.config for v in rows)
    assert set((settings.resolved_models_dir / "ray_train").glob("*")) == before


def test_a_failing_group_registers_nothing(cluster, db):
    from kitrade.training.runs import train_all

    settings = cluster.model_copy(update={"train_distributed_min_bars": 100})
    report = train_all(settings, list(SHORT), force=True, overrides=TINY, scope="shared")
    by = {r.symbol: r for r in report.results}
    assert {r.status for r in by.values()} == {"failed"}
    assert "SHORTB: 60 bars" in (by["SHORTA"].error or "")
    with db.connection() as conn:
        assert all(list_versions(conn, symbol=s) == [] for s in SHORT)
        states = {s.symbol: s for s in load_run(conn, run_id=report.run_id).symbols}
    assert {s.state for s in states.values()} == {"failed"}
    assert all("shared M15" in (s.error or "") for s in states.values())


def test_a_worker_failure_is_a_clear_error_naming_the_run(cluster, db):
    from kitrade.training import distributed
    from kitrade.training.evaluation import prepare_shared
    from kitrade.training.spec import default_config

    with db.connection() as conn:
        frames = [to_training_frame(s, get_bars(conn, symbol=s)) for s in LEVELS]
    config = default_config("H1", 400, **TINY)
    prepared = prepare_shared(frames, config)

    def broken_sink(**fields: object) -> None:
        raise RuntimeError("progress sink is gone")

    plan = distributed.worker_plan(cluster, len(prepared))
    with pytest.raises(DistributedTrainingError, match=r"H1-broken: Ray Train failed") as caught:
        distributed.fit_shared_distributed(
            cluster, prepared, config, name="H1-broken", plan=plan, report=broken_sink
        )
    assert "progress sink is gone" in caught.value.message  # the worker's own error


def test_the_worker_plan_fits_the_series_and_the_cluster(cluster):
    from kitrade.training.distributed import is_distributed, worker_plan

    plan = worker_plan(cluster, 3)
    assert (plan.workers, plan.use_gpu, plan.backend) == (2, False, "gloo")
    assert plan.describe() == "2 workers, gloo" and plan.resources == {"CPU": 1.0}
    many = cluster.model_copy(update={"train_distributed_workers": 8})
    assert worker_plan(many, 3).workers == 2  # never more workers than the cluster's 2 CPUs
    assert worker_plan(many, 1).workers == 1  # nor than series
    assert is_distributed(cluster.model_copy(update={"train_distributed_min_bars": 1200}), 1200)
    assert not is_distributed(cluster.model_copy(update={"train_distributed_min_bars": 1201}), 1200)
    assert not is_distributed(cluster.model_copy(update={"train_distributed_min_bars": 0}), 10**9)
