"""The training benchmark runs end to end at its smallest and writes every figure."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

#: the issue's keys, then the earlier ones and those the ratios are made of
KEYS = (
    "shared_s",
    "shared_speedup",
    "shared_mean_rmae",
    "per_symbol_mean_rmae",
    "per_symbol_efficiency",
    "per_symbol_efficiency_warm",
    "shared_warm_s",
    "thread_gain",
    "ideal_speedup",
    "kitrade_s",
    "baseline_s",
    "speedup",
    "kitrade_mean_rmae",
    "baseline_mean_rmae",
    "kitrade_warm_s",
    "speedup_warm",
    "warm_mean_rmae",
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_training.py"), *args],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_bench_training_smallest_run_writes_all_figures(tmp_path):
    out = tmp_path / "bench.json"
    res = _run(
        *("--symbols", "2", "--max-steps", "2", "--cv-windows", "3", "--gain-symbols", "1"),
        *("--json", str(out)),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for line in ("old way (sequential fits", "kitrade shared, cold / warm", "(target >= 4x)"):
        assert line in res.stdout, res.stdout
    assert "EURX01" in res.stdout  # the per-symbol table lists the derived series
    f = json.loads(out.read_text())
    missing = [k for k in KEYS if k not in f]
    assert not missing, missing
    bad = {k: f[k] for k in KEYS if not (math.isfinite(f[k]) and f[k] > 0)}
    assert not bad, bad
    assert f["symbols"] == 2 and f["max_steps"] == 2 and f["cv_windows"] == 3
    # the ratios are made of the written times, the efficiency of the measured gain
    assert f["shared_speedup"] == pytest.approx(f["baseline_s"] / f["shared_s"])
    assert f["ideal_speedup"] == pytest.approx(f["cores"] / f["thread_gain"])
    assert f["per_symbol_efficiency"] == pytest.approx(
        f["baseline_s"] / f["kitrade_s"] / f["ideal_speedup"]
    )
    assert f["shared_rmae_change_pct"] == pytest.approx(
        100 * (f["shared_mean_rmae"] / f["per_symbol_mean_rmae"] - 1)
    )
    # per-symbol kitrade trains the old way's config: at 2 steps both miss naive alike
    assert f["per_symbol_mean_rmae"] == pytest.approx(f["baseline_mean_rmae"], rel=0.05)


def test_bench_training_refuses_fewer_than_two_symbols():
    res = _run("--symbols", "1")
    assert res.returncode == 2
    assert "--symbols: expected 2 or more, was 1" in res.stderr
