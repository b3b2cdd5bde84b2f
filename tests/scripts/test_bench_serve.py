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
BURST_KEYS = (
    "burst_p50_ms",
    "burst_p99_ms",
    "burst_batch_size_mean",
    "burst_pass_series_mean",
    "burst_pass_series_max",
    "burst_passes_per_burst",
)


def _run(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_serve.py"), *options, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_bench_serve_smallest_run_writes_all_figures(tmp_path):
    out = tmp_path / "bench.json"
    res = _run(out, "--symbols", "16", "--seconds", "2", "--burst-rounds", "3", "--tiny")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(d) kitrade, uncached mix" in res.stdout
    figures = json.loads(out.read_text())
    missing = [k for k in (*KEYS, *BURST_KEYS, "pass_series_mean") if k not in figures]
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
    # A model per symbol: every forward pass carries one series, in the mix and in the burst.
    assert figures["scope"] == "symbol" and figures["model_artifacts"] == 17
    assert figures["pass_series_max"] == 1 and figures["passes"] >= 1
    assert figures["burst_pass_series_max"] == 1 and figures["burst_errors"] == 0
    assert figures["burst_passes_per_burst"] >= 1 and figures["burst_symbols"] == 16


@pytest.mark.slow
def test_bench_serve_burst_with_a_shared_model_answers_several_symbols_per_pass(tmp_path):
    out = tmp_path / "burst.json"
    res = _run(out, "--scope", "shared", "--burst-only", "--burst-rounds", "3", "--tiny")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(f) burst, shared scope, model artifacts: 1;" in res.stdout
    figures = json.loads(out.read_text())
    missing = [k for k in BURST_KEYS if k not in figures]
    assert not missing, missing
    assert "noop_rps" not in figures  # --burst-only: no (a)-(e)
    assert figures["model_artifacts"] == 1 and figures["burst_errors"] == 0
    # Most answers came from a forward pass on the new bar, not from a cache.
    assert figures["burst_fresh_share"] >= 0.5, figures
    # The behaviour under test: requests for different symbols shared a forward pass.
    assert figures["burst_pass_series_max"] > 1, figures
    assert figures["burst_passes_per_burst"] < figures["burst_symbols"], figures
    assert 1.0 <= figures["burst_batch_size_mean"] <= figures["burst_batch_size_max"] <= 32
    assert 0 < figures["burst_p50_ms"] <= figures["burst_p99_ms"]
