"""scripts/bench_backtest.py runs end to end on a small sweep and writes its JSON figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_backtest_small_run_writes_the_figures(tmp_path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--sets", "6", "--bt-sets", "2", "--repeat", "1", "--cuts", "3", "--json", str(out)]
    # part (c) at its smallest: one fold of 3 decision bars per sample symbol, 2 NHITS steps
    args += ["--wf-folds", "1", "--wf-decisions", "3", "--wf-max-steps", "2"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_backtest.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    for key in ("engine_ratio_vs_vectorbt", "equity_max_rel_diff", "ratio_vs_backtesting_py"):
        assert figures[key] > 0
    assert figures["equity_max_rel_diff"] <= 1e-6
    # backtesting.py ran the same sets in this process, and its equity is compared too: what
    # is left is where each books the price cost (a few 1e-4), not a different backtest.
    assert figures["backtesting_processes"] == 1
    assert figures["equity_max_rel_diff_backtesting_py"] < 5e-3
    assert figures["vectorbt_inputs_s"] > 0
    assert figures["lookahead_violations"] == 0
    assert figures["walkforward_s"] > 0 and figures["walkforward_sequential_s"] > 0
    assert figures["walkforward_folds"] == 3  # one per sample symbol
    assert figures["walkforward_identical"] is True  # same forecasts either way
    assert "lookahead violations" in done.stdout
    assert "ratio backtesting.py / kitrade" in done.stdout
    assert "walk-forward, one after another" in done.stdout


def test_bench_backtest_can_leave_out_the_walk_forward_part(tmp_path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--sets", "2", "--bt-sets", "1", "--repeat", "1", "--cuts", "1", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_backtest.py"), *args, "--skip-walkforward"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "walkforward_s" not in json.loads(out.read_text())
    assert "skipped" in done.stdout
