"""The ingest benchmark runs end to end on a small set and writes its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_bench_ingest_small_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_ingest.py"),
            "--rows",
            "20000",
            "--symbols",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ratio kitrade / best bare COPY" in res.stdout
    figures = json.loads(out.read_text())
    for key in ("kitrade_rows_per_s", "copy_rows_per_s", "ratio", "peak_rss_mib"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["rows"] == 20000
    assert abs(figures["ratio"] - figures["kitrade_rows_per_s"] / figures["copy_rows_per_s"]) < 1e-6
