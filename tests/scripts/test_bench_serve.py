"""The serving benchmark runs end to end at its smallest and writes every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

KEYS = (
    "noop_rps",
    "kitrade_rps",
    "baseline_rps",
    "kitrade_p99_ms",
    "baseline_p50_ms",
    "miss_rps",
    "miss_p99_ms",
    "miss_ratio_vs_baseline",
    "miss_hit_share",
    "mean_batch_size",
    "baseline_miss_rps",
    "baseline_miss_p50_ms",
)


@pytest.mark.slow
def test_bench_serve_smallest_run_writes_all_figures(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_serve.py"),
            "--symbols",
            "16",
            "--seconds",
            "2",
            "--tiny",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(d) kitrade, uncached mix" in res.stdout
    figures = json.loads(out.read_text())
    missing = [k for k in KEYS if k not in figures]
    assert not missing, missing
    assert all(figures[k] > 0 for k in KEYS if k not in ("miss_hit_share",)), figures
    assert figures["errors"] == 0
    assert figures["symbols"] == 16 and figures["max_horizon"] >= 1
    # The one-symbol run is served by the hot cache; the mix is not entirely.
    assert figures["kitrade_hit_share"] > 0.9
    assert 0.0 <= figures["miss_hit_share"] < 1.0
    # The baseline has no cache at all.
    assert figures["baseline_hit_share"] == 0.0
    assert figures["baseline_miss_hit_share"] == 0.0
    # New bars were ingested during both mix runs, and some requests reached @serve.batch.
    assert figures["ingested_bars"] >= 2 * figures["ingested_symbols"] > 0
    assert figures["batches"] >= 1
    assert 1.0 <= figures["mean_batch_size"] <= figures["max_batch_size"] <= 32
    assert (
        abs(figures["miss_ratio_vs_baseline"] - figures["miss_rps"] / figures["baseline_miss_rps"])
        < 1e-6
    )
