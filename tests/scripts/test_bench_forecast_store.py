"""The forecast-store benchmark runs end to end on a small fold and writes its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_bench_forecast_store_small_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    script = ROOT / "scripts" / "bench_forecast_store.py"
    args = ["--decisions", "300", "--horizon", "4", "--json", str(out)]
    res = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ratio kitrade / bare COPY" in res.stdout
    figures = json.loads(out.read_text())
    assert figures["rows"] == 1200
    for key in ("kitrade_rows_per_s", "kitrade_rerun_rows_per_s", "copy_rows_per_s", "ratio"):
        assert figures[key] > 0, key
    assert abs(figures["ratio"] - figures["kitrade_rows_per_s"] / figures["copy_rows_per_s"]) < 1e-9
