"""Point-in-time forecasts: every forecast uses only the bars up to its decision bar.

Real neuralforecast NHITS with tiny configurations; the Ray tests run on a
real local cluster with 4 logical CPUs and 1 logical GPU, as the training
tests do (with NHITS_USE_GPU each fold task asks for the training fraction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kitrade.backtest.folds import make_folds, walk_forward_folds
from kitrade.backtest.forecasts import (
    FORECAST_COLUMNS,
    FoldError,
    FoldJob,
    compute_forecasts,
    fold_forecasts,
    fold_key,
    point_in_time_checks,
)
from kitrade.errors import InvalidInputError

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
        {"open": close, "high": close + 0.1, "low": close - 0.1, "close": close, "volume": 1.0},
        index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC", name="ts"),
    )


@pytest.fixture(scope="module")
def setup():
    bars = synthetic(260, 0)
    config, folds = walk_forward_folds(
        bars, timeframe="H1", n_folds=2, start=bars.index[200], symbol="SYN", **TINY
    )
    full = {f.index: fold_forecasts(bars, symbol="SYN", fold=f, config=config) for f in folds}
    return bars, config, folds, full


def test_one_full_horizon_forecast_per_decision_bar(setup) -> None:
    bars, config, folds, full = setup
    for f in folds:
        out = full[f.index]
        assert tuple(out.columns) == FORECAST_COLUMNS
        decisions = bars.index[(bars.index >= f.start) & (bars.index <= f.end)]
        assert list(out["issued_at"].unique()) == list(decisions)
        assert len(out) == f.n_decisions * config.horizon
        assert (
            out.groupby("issued_at")["step"]
            .apply(list)
            .map(lambda s: s == [1, 2, 3, 4, 5, 6])
            .all()
        )
        assert (out["trained_through"] == f.trained_through).all()
        assert (out["trained_through"] < out["issued_at"]).all()
        assert (out["model_version"] == f"nhits-wf-{fold_key(config, f)}").all()
        assert (out["lo_95"] <= out["lo_80"]).all() and (out["lo_80"] <= out["mean"]).all()
        assert (out["mean"] <= out["hi_80"]).all() and (out["hi_80"] <= out["hi_95"]).all()
        assert np.isfinite(out[["mean", "lo_80", "hi_80", "lo_95", "hi_95"]].to_numpy()).all()
    checks = point_in_time_checks(pd.concat(full.values()), {"SYN": folds})
    assert all(c["passed"] for c in checks), checks


def test_truncating_the_data_never_changes_an_earlier_forecast(setup) -> None:
    bars, config, folds, full = setup
    rng = np.random.default_rng(7)
    first, last = bars.index.get_loc(folds[0].start), len(bars) - 1
    cuts = sorted(rng.choice(np.arange(first, last), size=3, replace=False))
    for cut in cuts:
        cut_ts = bars.index[cut]
        short = bars.iloc[: cut + 1]
        for f in folds:
            if f.start > cut_ts:
                continue
            got = fold_forecasts(short, symbol="SYN", fold=f, config=config)
            want = full[f.index]
            want = want[want["issued_at"] <= cut_ts].reset_index(drop=True)
            assert len(got) > 0
            pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_changing_later_bars_leaves_earlier_forecasts_and_changes_the_bar_itself(setup) -> None:
    bars, config, folds, full = setup
    f = folds[1]
    pos = bars.index.get_loc(f.start) + 10
    shocked = bars.copy()
    shocked.iloc[pos:, shocked.columns.get_loc("close")] += 5.0
    got = fold_forecasts(shocked, symbol="SYN", fold=f, config=config)
    want = full[f.index]
    at = bars.index[pos]
    before = got["issued_at"] < at
    pd.testing.assert_frame_equal(
        got[before].reset_index(drop=True), want[want["issued_at"] < at].reset_index(drop=True)
    )
    # The decision bar itself is part of its forecast's input (no off-by-one).
    assert not np.allclose(
        got.loc[got["issued_at"] == at, "mean"], want.loc[want["issued_at"] == at, "mean"]
    )


def test_bars_changed_before_the_fold_are_refused(setup) -> None:
    bars, config, folds, _ = setup
    with pytest.raises(InvalidInputError, match=r"SYN fold 2 .*expected \d+ bars before the fold"):
        fold_forecasts(bars.drop(bars.index[5]), symbol="SYN", fold=folds[1], config=config)


def test_the_completeness_check_catches_a_skipped_decision_bar(setup) -> None:
    _, _, folds, full = setup
    dropped = pd.concat(full.values(), ignore_index=True).iloc[6:]
    checks = {c["name"]: c["passed"] for c in point_in_time_checks(dropped, {"SYN": folds})}
    assert checks["every_decision_bar"] is False


def test_fold_key_changes_with_the_config_and_the_training_bars(setup) -> None:
    _, config, folds, _ = setup
    assert fold_key(config, folds[0]) != fold_key(config, folds[1])
    other = config.model_copy(update={"max_steps": config.max_steps + 1})
    assert fold_key(config, folds[0]) != fold_key(other, folds[0])
    assert fold_key(config, folds[0]) == fold_key(config.model_copy(), folds[0])


# ------------------------------------------------------------------------------ on Ray
@pytest.fixture(scope="module")
def cluster(module_settings):
    import ray

    from kitrade.cluster import connect

    settings = module_settings.model_copy(update={"nhits_use_gpu": True})
    connect(num_cpus=4, num_gpus=1)
    yield settings
    ray.shutdown()


@pytest.mark.slow
def test_ray_folds_match_in_process_and_report_progress_per_fold(cluster, setup) -> None:
    from kitrade.training.tasks import task_resources

    bars, config, folds, full = setup
    assert task_resources(cluster) == {"num_cpus": 1, "num_gpus": cluster.train_gpu_fraction}
    other = synthetic(260, 1)
    jobs = [FoldJob("SYN", f, config, bars) for f in folds]
    jobs += [FoldJob("OTH", f, config, other) for f in folds]
    seen: list[tuple[int, int, str]] = []
    stored: list[tuple[str, int]] = []
    out = compute_forecasts(
        cluster,
        jobs,
        progress=lambda d, t, m: seen.append((d, t, m)),
        on_fold=lambda j, _f: stored.append((j.symbol, j.fold.index)),
    )
    assert sorted(out) == [("OTH", 1), ("OTH", 2), ("SYN", 1), ("SYN", 2)]
    assert [(d, t) for d, t, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all("fold" in m for _, _, m in seen)
    assert sorted(stored) == sorted(out)
    for f in folds:  # a Ray worker issues exactly the forecasts the driver does
        pd.testing.assert_frame_equal(out[("SYN", f.index)], full[f.index], check_exact=True)
    assert not out[("OTH", 1)]["mean"].equals(out[("SYN", 1)]["mean"])


@pytest.mark.slow
def test_a_failed_fold_names_the_symbol_and_the_fold(cluster, setup) -> None:
    bars, config, _, _ = setup
    # A fold forced onto 20 training bars: fewer than NHITS needs (input + horizon + val).
    bad = make_folds(bars.index, start=bars.index[20], end=bars.index[40], n_folds=1, min_train=1)
    with pytest.raises(
        FoldError, match=r"SYN fold 1 \(.*\) failed: .*20 bars, expected at least"
    ) as info:
        compute_forecasts(cluster, [FoldJob("SYN", bad[0], config, bars)])
    assert info.value.symbol == "SYN"
    assert info.value.fold == 1


@pytest.mark.slow
def test_the_benchmark_hook_times_both_ways_and_gets_the_same_forecasts(cluster, setup) -> None:
    from kitrade.backtest.forecasts import time_walk_forward

    bars, config, folds, _ = setup
    out = time_walk_forward(cluster, [FoldJob("SYN", f, config, bars) for f in folds])
    assert out["folds"] == 2
    assert out["parallel_s"] > 0 and out["sequential_s"] > 0
    assert out["identical"] is True
    assert out["resources"]["num_gpus"] == cluster.train_gpu_fraction
