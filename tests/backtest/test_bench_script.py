"""scripts/bench_backtest.py runs end to end on a small sweep and writes its JSON figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_backtest_small_run_writes_the_figures(tmp_path) -> None:
    pytest.importorskip("vectorbt")
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--sets", "6", "--bt-sets", "2", "--repeat", "1", "--cuts", "3", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_backtest.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    for key in ("engine_ratio_vs_vectorbt", "equity_max_rel_diff", "ratio_vs_backtesting_py"):
        assert figures[key] > 0
    assert figures["equity_max_rel_diff"] <= 1e-6
    assert figures["lookahead_violations"] == 0
    assert "lookahead violations" in done.stdout
