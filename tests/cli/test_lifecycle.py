"""``kitrade up`` and ``down`` beside a running platform and another Ray cluster.

A second ``up`` leaves the running platform alone and says so, whether or not the caller's
environment holds ``RAY_AUTH_MODE``; ``sync`` finds the platform the same way and writes
market notes; a start that would clash refuses before touching anything; two platforms run
side by side; ``down`` stops its own cluster and names the others it leaves running.

Every platform and cluster here gets its own ports and temp dir, and is stopped in
``finally`` by what started it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli import platform_env, run, stop_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory, other_ray) -> Iterator[dict[str, str]]:
    """``kitrade up --detach`` in a data dir of its own; its environment."""
    env = platform_env(tmp_path_factory.mktemp("platform"))
    try:
        up = run(env, "up", "--detach", "--max-steps", "5", timeout=600)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield env
    finally:
        stop_platform(env)


def _base(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['KITRADE_PORT']}"


def _with_auth_env(env: dict[str, str], auth_env: str) -> dict[str, str]:
    """``env`` without any ``RAY_AUTH_*`` variable, or with ``RAY_AUTH_MODE=token``."""
    out = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    if auth_env == "token":
        out["RAY_AUTH_MODE"] = "token"
    return out


def _record(env: dict[str, str]) -> object:
    from kitrade.cluster import platform_record

    return platform_record(Path(env["KITRADE_DATA_DIR"]))


@pytest.mark.parametrize("auth_env", ["unset", "token"])
def test_a_second_up_says_already_running_and_leaves_the_platform_alone(platform, auth_env):
    before = _record(platform)
    again = run(_with_auth_env(platform, auth_env), "up", "--detach", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already running" in again.stdout, again.stdout
    assert f"{_base(platform)}/docs" in again.stdout and f"{_base(platform)}/health" in again.stdout
    assert "start-up failed" not in again.stderr and "stopping" not in again.stderr
    assert _record(platform) == before
    health = httpx.get(f"{_base(platform)}/health", timeout=30)
    assert health.status_code == 200, health.text
    status = run(_with_auth_env(platform, auth_env), "status")
    assert f"platform      running: API {_base(platform)}" in status.stdout, status.stdout


@pytest.mark.parametrize("auth_env", ["unset", "token"])
def test_sync_with_the_platform_up_writes_market_notes(platform, auth_env):
    import psycopg

    conninfo = f"host=127.0.0.1 port={platform['KITRADE_EMBEDDED_PG_PORT']} user=postgres"
    with psycopg.connect(f"{conninfo} dbname=kitrade", autocommit=True) as conn:
        # the source still has these bars: the sync brings them back as new bars
        conn.execute(
            "DELETE FROM bars WHERE symbol = 'EURUSD' AND ts > "
            "(SELECT max(ts) - interval '3 hours' FROM bars WHERE symbol = 'EURUSD')"
        )
    sync = run(_with_auth_env(platform, auth_env), "sync", "EURUSD", timeout=300)
    assert sync.returncode == 0, sync.stderr[-3000:]
    assert "market notes 1" in sync.stdout, sync.stdout + sync.stderr
    assert "no running platform" not in sync.stdout + sync.stderr


def test_up_refuses_a_taken_port_before_touching_anything(tmp_path, platform, other_ray):
    env = platform_env(tmp_path)
    env["KITRADE_RAY_PORT"] = str(other_ray.gcs_port)
    up = run(env, "up", "--detach", timeout=300)
    assert up.returncode == 78, up.stdout + up.stderr
    assert f"{other_ray.gcs_port} (KITRADE_RAY_PORT)" in up.stderr
    assert not (tmp_path / "pg").exists() and not (tmp_path / "platform.json").exists()
    assert other_ray.answers()
    assert httpx.get(f"{_base(platform)}/health", timeout=30).status_code == 200


def test_up_refuses_a_recorded_cluster_that_lives_but_does_not_answer(tmp_path, other_ray):
    """A record naming live processes that do not answer the probe is not torn down (they
    may be a platform under load); the start stops, and the database it did not start
    runs on."""
    import psutil

    from kitrade.cluster import PlatformRecord, write_platform

    env = platform_env(tmp_path)
    gcs = next(
        p
        for p in psutil.process_iter(["name"])
        if p.info["name"] == "gcs_server" and os.getsid(p.pid) == other_ray.process_session
    )
    session_dir = next(a for a in gcs.cmdline() if a.startswith("--session-dir=")).split("=", 1)[1]
    try:
        assert run(env, "db", "up").returncode == 0
        write_platform(
            tmp_path,
            PlatformRecord(
                address=f"127.0.0.1:{other_ray.gcs_port}",
                gcs_port=other_ray.gcs_port,
                dashboard_port=int(env["KITRADE_RAY_DASHBOARD_PORT"]),  # nothing answers
                client_port=int(env["KITRADE_RAY_CLIENT_PORT"]),
                temp_dir=str(Path(session_dir).parent),
                session_dir=session_dir,
                process_session=other_ray.process_session,
                auth_mode="token",
                token_path=None,
                serve_url=_base(env),
                pg_started=True,
                pg_port=int(env["KITRADE_EMBEDDED_PG_PORT"]),
                owner_pid=1,
            ),
        )
        up = run(env, "up", "--detach", timeout=300)
        assert up.returncode == 4, up.stdout + up.stderr
        assert "has live processes but does not answer" in up.stderr
        status = run(env, "status")
        assert status.returncode == 0 and "recorded but its Ray cluster does not answer" in (
            status.stdout
        )
        assert other_ray.answers()
    finally:
        (tmp_path / "platform.json").unlink(missing_ok=True)
        run(env, "db", "down")


def test_two_platforms_run_side_by_side_and_down_stops_only_its_own(tmp_path, platform, other_ray):
    second = platform_env(tmp_path)
    try:
        up = run(second, "up", "--detach", "--no-train", timeout=600)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        for env in (platform, second):
            assert httpx.get(f"{_base(env)}/api/v1/symbols", timeout=30).status_code == 200
        first_gcs = _record(platform).gcs_port  # type: ignore[attr-defined]
    finally:
        down = stop_platform(second)
    assert down.returncode == 0, down.stderr[-2000:]
    assert "Ray stopped" in down.stdout
    assert (
        f"GCS port {first_gcs}" in down.stdout and f"GCS port {other_ray.gcs_port}" in down.stdout
    )
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{_base(second)}/api/v1/symbols", timeout=5)
    assert httpx.get(f"{_base(platform)}/health", timeout=30).status_code == 200
    assert other_ray.answers()


def test_down_stops_its_own_cluster_and_leaves_another_running(platform, other_ray):
    env = {k: v for k, v in platform.items() if not k.startswith("RAY_AUTH")}
    down = run(env, "down", timeout=300)
    assert down.returncode == 0, down.stderr[-2000:]
    assert "Ray stopped" in down.stdout and "embedded PostgreSQL stopped" in down.stdout
    assert f"GCS port {other_ray.gcs_port}" in down.stdout and "--all-ray" in down.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{_base(platform)}/health", timeout=5)
    assert _record(platform) is None
    assert other_ray.answers()
