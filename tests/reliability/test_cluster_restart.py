"""The whole cluster stopped hard (``ray stop --force``) mid-training and mid-serving, then
started the normal way: endpoints back, progress not behind, no duplicate rows.

``ray stop --force`` stops every Ray process on the machine: the other suites'
clusters are module-scoped, so none is alive while this module runs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli import base_env, run
from tests.conftest import free_port

pytestmark = pytest.mark.slow
KEY = "restart-key-0123456789"


def _poll(fn, timeout_s: float) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("timed out")


def test_cluster_restart_mid_training_and_serving(tmp_path, record):
    import psycopg

    env = base_env(tmp_path)
    port, pg_port = free_port(), free_port()
    env.update(
        KITRADE_EMBEDDED_PG_PORT=str(pg_port),
        KITRADE_PORT=str(port),
        KITRADE_API_KEY=KEY,
        KITRADE_TRAIN_MAX_STEPS="400",
    )
    base = f"http://127.0.0.1:{port}"
    ray_bin = str(Path(sys.executable).parent / "ray")
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        up = run(env, "up", "--detach", "--max-steps", "5", timeout=400)
        assert up.returncode == 0, up.stderr[-3000:]
        started = httpx.post(
            f"{base}/api/v1/forecast/train-all",
            params={"force": "true", "background": "true"},
            headers=auth,
            timeout=60,
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]

        def stepping() -> dict | None:
            p = httpx.get(
                f"{base}/api/v1/forecast/training/progress", params={"run_id": run_id}, timeout=10
            ).json()
            steps = {s["symbol"]: s.get("step") or 0 for s in p.get("symbols", [])}
            return steps if any(v >= 20 for v in steps.values()) else None

        before = _poll(stepping, 180)
        fc = httpx.get(f"{base}/api/v1/forecast/EURUSD", timeout=30)
        assert fc.status_code == 200
        t0 = time.monotonic()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, check=False)
        again = run(env, "up", "--detach", "--no-train", timeout=400)
        assert again.returncode == 0, again.stderr[-3000:]
        _poll(lambda: httpx.get(f"{base}/health", timeout=10).status_code == 200, 120)
        _poll(
            lambda: httpx.get(f"{base}/api/v1/forecast/EURUSD", timeout=10).status_code == 200, 60
        )
        recovered = time.monotonic() - t0
        after = httpx.get(
            f"{base}/api/v1/forecast/training/progress", params={"run_id": run_id}, timeout=30
        ).json()
        after_steps = {s["symbol"]: s.get("step") or 0 for s in after.get("symbols", [])}
        behind = {
            s: (before[s], after_steps.get(s, 0))
            for s in before
            if after_steps.get(s, 0) < before[s]
        }
        with psycopg.connect(f"host=127.0.0.1 port={pg_port} user=postgres dbname=kitrade") as conn:
            dup_bars = conn.execute(
                "SELECT count(*) FROM (SELECT symbol, ts FROM bars GROUP BY 1, 2"
                " HAVING count(*) > 1) d"
            ).fetchone()[0]
            dup_versions = conn.execute(
                "SELECT count(*) - count(DISTINCT version) FROM model_versions"
            ).fetchone()[0]
            active = conn.execute(
                "SELECT symbol, count(*) FROM model_versions WHERE status='active' GROUP BY 1"
            ).fetchall()
        ok = not behind and dup_bars == 0 and dup_versions == 0 and all(n == 1 for _, n in active)
        record("whole cluster restarted mid-training and mid-serving", ok, 0, recovered)
        assert not behind, behind
        assert dup_bars == 0 and dup_versions == 0 and all(n == 1 for _, n in active)
    finally:
        down = run(env, "down", timeout=180)
    assert down.returncode == 0, down.stderr[-2000:]
