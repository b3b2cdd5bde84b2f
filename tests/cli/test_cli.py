"""The `kitrade` CLI as a user runs it: subprocesses, exit codes, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port

KITRADE = [sys.executable, "-m", "kitrade.cli"]


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*KITRADE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env["KITRADE_DATA_DIR"],
    )


def base_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KITRADE_", "TIMESCALE_", "NHITS_", "EASYINSIGHT_", "RAY_ADDRESS"))
    }
    env["KITRADE_DATA_DIR"] = str(data_dir)
    env["COLUMNS"] = "200"
    return env


def platform_env(data_dir: Path) -> dict[str, str]:
    """``base_env`` with a free port for every fixed port of the platform (database, HTTP,
    Ray's GCS, dashboard, client and agent) and a Ray temp dir of its own, so platforms of
    parallel tests and other people's Ray clusters never meet."""
    import tempfile

    env = base_env(data_dir)
    for name in (
        "KITRADE_EMBEDDED_PG_PORT",
        "KITRADE_PORT",
        "KITRADE_RAY_PORT",
        "KITRADE_RAY_DASHBOARD_PORT",
        "KITRADE_RAY_CLIENT_PORT",
        "KITRADE_RAY_AGENT_PORT",
    ):
        env[name] = str(free_port())
    env["KITRADE_RAY_TEMP_DIR"] = tempfile.mkdtemp(prefix="kt-ray-")
    return env


def stop_platform(env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """``kitrade down`` for the platform of ``env``; if that left its record (down failed),
    the recorded cluster's processes are killed, so a test never leaves a cluster behind."""
    from kitrade.cluster import platform_record
    from tests.test_platform import kill_session

    down = run(env, "down", timeout=timeout)
    record = platform_record(Path(env["KITRADE_DATA_DIR"]))
    if record is not None:
        kill_session(record.process_session)
    return down


@pytest.fixture(scope="module")
def external_env(pg_server, tmp_path_factory):
    """CLI environment against the session server as an external database."""
    env = base_env(tmp_path_factory.mktemp("cli"))
    env.update(
        TIMESCALE_HOST="127.0.0.1",
        TIMESCALE_PORT=str(pg_server.port),
        TIMESCALE_DB="cli_" + uuid.uuid4().hex[:8],
        TIMESCALE_USER="postgres",
    )
    return env


def test_help_is_fast_and_light():
    code = (
        "import sys, kitrade.cli; "
        "print(sorted(m for m in ('torch','ray','pandas','psycopg','chromadb') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


@pytest.mark.slow
def test_up_detach_runs_the_whole_platform_then_down_stops_it(tmp_path):
    import httpx

    env = platform_env(tmp_path)
    port = int(env["KITRADE_PORT"])
    try:
        up = run(env, "up", "--detach", "--max-steps", "5", timeout=400)
        assert up.returncode == 0, up.stderr[-3000:]
        assert "EURUSD" in up.stdout and "embedded" in up.stdout
        assert f"http://127.0.0.1:{port}/docs" in up.stdout
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        fc = httpx.get(f"http://127.0.0.1:{port}/api/v1/forecast/EURUSD?horizon=3", timeout=30)
        assert fc.status_code == 200 and len(fc.json()["points"]) == 3
        assert (tmp_path / "pg" / "PG_VERSION").exists()
        bars = run(env, "bars", "EURUSD", "--last", "5")
        assert bars.returncode == 0, bars.stderr
        assert "2018-02-07 15:00" in bars.stdout and "1.22904" in bars.stdout  # last real bar
        assert bars.stdout.count("2018-02-07") == 5
        status = run(env, "status")
        assert (
            status.returncode == 0 and "bars storage" in status.stdout and "table" in status.stdout
        )
    finally:
        down = stop_platform(env)
    assert down.returncode == 0 and "stopped" in down.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=3)
    after = run(env, "status")
    assert after.returncode == 69 and "running" in after.stdout and "no" in after.stdout


@pytest.mark.slow
def test_up_stopped_by_sigterm_during_start_up_leaves_nothing_running(tmp_path):
    import signal

    env = platform_env(tmp_path)
    proc = subprocess.Popen(
        [*KITRADE, "up", "--max-steps", "5"],
        env=env,
        cwd=env["KITRADE_DATA_DIR"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if "starting Ray" in line:
                proc.send_signal(signal.SIGTERM)  # mid start-up: PostgreSQL up, Ray starting
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(seen) + rest
    assert proc.returncode == 0, text[-3000:]
    assert "shutting down" in text and "stopped" in text
    after = run(env, "status")
    assert after.returncode == 69, after.stdout  # the embedded PostgreSQL was stopped too
    assert _processes_using(env["KITRADE_RAY_TEMP_DIR"]) == []  # and every Ray process
    assert not (tmp_path / "platform.json").exists()


def _processes_using(path: str) -> list[str]:
    """Command lines of live processes that name ``path`` (its Ray cluster's processes)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if path in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmd[:200])
    return found


def test_symbols_and_strategies_commands(external_env, tmp_path):
    env = external_env
    assert run(env, "db", "up").returncode == 0
    add = run(env, "symbols", "add", "XAUUSD", "--timeframe", "H4", "--asset-class", "commodity")
    assert add.returncode == 0, add.stderr
    dup = run(env, "symbols", "add", "XAUUSD")
    assert dup.returncode == 4 and "already exists" in dup.stderr
    bad = run(env, "symbols", "add", "xau/usd")
    assert bad.returncode == 2 and "symbol" in bad.stderr and "xau/usd" in bad.stderr
    badtf = run(env, "symbols", "add", "ABC", "--timeframe", "H2")
    assert badtf.returncode == 2 and "timeframe" in badtf.stderr
    listing = run(env, "symbols", "list")
    assert "XAUUSD" in listing.stdout and "H4" in listing.stdout

    spec = tmp_path / "s.json"
    spec.write_text(
        json.dumps(
            {
                "name": "breakout",
                "symbols": ["XAUUSD"],
                "timeframe": "H4",
                "parameters": {"lookback": 20},
            }
        )
    )
    assert run(env, "strategies", "add", str(spec)).returncode == 0
    assert "breakout" in run(env, "strategies", "list").stdout
    typed = tmp_path / "t.json"
    typed.write_text(
        json.dumps({"name": "trend", "symbols": ["XAUUSD"], "parameters": {"enter": 0.002}})
    )
    added = run(env, "strategies", "add", str(typed), "--kind", "forecast_threshold")
    assert added.returncode == 0, added.stderr
    assert "trend (forecast_threshold)" in added.stdout
    listing = run(env, "strategies", "list").stdout
    assert "forecast_threshold" in listing and "parameters" in listing  # both kinds shown
    typed.write_text(json.dumps({"name": "t2", "symbols": ["XAUUSD"], "parameters": {"edge": 1}}))
    wrong = run(env, "strategies", "add", str(typed), "--kind", "forecast_threshold")
    assert wrong.returncode == 2 and "edge" in wrong.stderr, wrong.stderr
    unknown = run(env, "strategies", "add", str(typed), "--kind", "moon_phase")
    assert unknown.returncode == 2 and "kind" in unknown.stderr, unknown.stderr
    assert run(env, "strategies", "rm", "trend").returncode == 0
    spec.write_text("{not json")
    broken = run(env, "strategies", "add", str(spec))
    assert broken.returncode == 2 and "expected a JSON strategy spec" in broken.stderr
    assert run(env, "strategies", "rm", "breakout").returncode == 0
    assert run(env, "symbols", "rm", "XAUUSD").returncode == 0
    missing = run(env, "bars", "XAUUSD")
    assert missing.returncode == 3 and "not found" in missing.stderr


def test_invalid_setting_stops_with_exit_78(external_env):
    env = dict(external_env, NHITS_AUTO_RETRAIN_DAYS="often")
    res = run(env, "status")
    assert res.returncode == 78
    assert "NHITS_AUTO_RETRAIN_DAYS" in res.stderr and "'often'" in res.stderr
    assert "Traceback" not in res.stderr


def test_unreachable_database_is_a_clear_error_not_a_traceback(tmp_path):
    env = base_env(tmp_path)
    env.update(
        TIMESCALE_HOST="127.0.0.1",
        TIMESCALE_PORT=str(free_port()),
        TIMESCALE_PASSWORD="pw-must-not-leak",
        KITRADE_DB_CONNECT_TIMEOUT_S="2",
    )
    res = run(env, "symbols", "list")
    assert res.returncode == 69
    assert "database unavailable" in res.stderr
    assert "Traceback" not in res.stderr and "pw-must-not-leak" not in res.stderr


def test_status_warns_when_listening_beyond_localhost_without_key(external_env):
    res = run(dict(external_env, KITRADE_HOST="0.0.0.0"), "status")
    assert "beyond localhost" in res.stderr and "KITRADE_API_KEY" in res.stderr
