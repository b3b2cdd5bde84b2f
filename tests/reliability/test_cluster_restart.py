"""The whole cluster stopped hard (every process of kitrade's cluster SIGKILLed, as
``ray stop --force`` would, but only that cluster's) mid-training and mid-serving, then
started the normal way: endpoints back, progress not behind, no duplicate rows.

The platform runs on ports and in a temp dir of its own; the processes killed are the
ones its record names (its process session), so other Ray clusters on the machine live on."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli import base_env, platform_env, run, stop_platform
from tests.test_platform import kill_session

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


def _ray_listeners() -> dict[int, set[str]]:
    """Listening TCP port -> addresses, for every Ray process on this machine."""
    import psutil

    out: dict[int, set[str]] = {}
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or conn.pid is None:
            continue
        try:
            cmd = " ".join(psutil.Process(conn.pid).cmdline())
        except psutil.Error:
            continue
        if "ray" in cmd:
            out.setdefault(conn.laddr.port, set()).add(conn.laddr.ip)
    return out


def _check_posture(env: dict[str, str], record) -> None:
    """The dashboard, job API and Serve port on loopback only; token auth on the
    dashboard, the job API and the GCS (which Ray binds on every interface)."""
    api_port, dash_port = int(env["KITRADE_PORT"]), int(env["KITRADE_RAY_DASHBOARD_PORT"])
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    listeners = _ray_listeners()
    for port in (dash_port, api_port):
        assert listeners.get(port), f"nothing listens on {port}: {listeners}"
        assert listeners[port] <= loopback, f"port {port} listens on {listeners[port]}"
    dash = f"http://127.0.0.1:{dash_port}"
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    no_token = httpx.get(f"{dash}/api/jobs/", timeout=10)
    wrong = httpx.get(
        f"{dash}/api/jobs/", headers={"Authorization": "Bearer " + "x" * 64}, timeout=10
    )
    right = httpx.get(f"{dash}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert no_token.status_code == 401 and wrong.status_code in (401, 403), (
        no_token.status_code,
        wrong.status_code,
    )
    assert right.status_code == 200, right.text[:300]
    # A driver holding the wrong token cannot join the cluster through the GCS port.
    intruder = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); print('JOINED')",
            f"127.0.0.1:{env['KITRADE_RAY_PORT']}",
        ],
        env={
            **base_env(Path(tempfile.gettempdir())),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": "0" * 64,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "JOINED" not in intruder.stdout and intruder.returncode != 0
    record("Ray dashboard and job API: loopback only, 401 without the token", True, 0, None)
    record("GCS port: a driver with a wrong token cannot join", True, 0, None)


def test_cluster_restart_mid_training_and_serving(tmp_path, record):
    import psycopg

    from kitrade.cluster import platform_record

    env = platform_env(tmp_path)
    port, pg_port = int(env["KITRADE_PORT"]), int(env["KITRADE_EMBEDDED_PG_PORT"])
    env.update(
        KITRADE_API_KEY=KEY,
        KITRADE_TRAIN_MAX_STEPS="400",
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        up = run(env, "up", "--detach", "--max-steps", "5", timeout=400)
        assert up.returncode == 0, up.stderr[-3000:]
        _check_posture(env, record)
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
        cluster = platform_record(tmp_path)
        assert cluster is not None
        kill_session(cluster.process_session)  # SIGKILL, this cluster's processes only
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
        down = stop_platform(env)
    assert down.returncode == 0, down.stderr[-2000:]
