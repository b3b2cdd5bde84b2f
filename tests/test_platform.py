"""kitrade's own Ray cluster: started on its own ports, found from its record with a
token-authenticated probe whatever the caller's environment holds, stopped alone.

Every cluster here is started by this module on free ports with a temp dir of its own, and
stopped by the fixture that started it; no ``ray stop``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port

RAY = str(Path(sys.executable).with_name("ray"))
TOKEN = Path.home() / ".ray" / "auth_token"


@dataclass
class OtherRay:
    """A Ray cluster kitrade did not start (another project's, a second test suite's)."""

    process_session: int
    gcs_port: int
    dashboard_port: int

    def answers(self) -> bool:
        """Its dashboard answers with the machine's token, and its GCS process lives."""
        headers = {"Authorization": f"Bearer {TOKEN.read_text().strip()}"}
        try:
            res = httpx.get(
                f"http://127.0.0.1:{self.dashboard_port}/api/version", headers=headers, timeout=10
            )
        except httpx.HTTPError:
            return False
        return res.status_code == 200 and any(
            p.name() == "gcs_server" for p in session_members(self.process_session)
        )


def session_members(sid: int) -> list[psutil.Process]:
    """Live processes of process session ``sid``."""
    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (what the test itself started) and wait."""
    procs = session_members(sid)
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            continue
    deadline = time.monotonic() + 30
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.2)


def start_other_ray(temp_dir: Path) -> OtherRay:
    """``ray start --head`` on free ports with its own temp dir, as another user would."""
    gcs, dash = free_port(), free_port()
    if not TOKEN.exists():
        subprocess.run([RAY, "get-auth-token", "--generate"], capture_output=True, check=True)
    cmd = [
        RAY,
        "start",
        "--head",
        f"--port={gcs}",
        f"--dashboard-port={dash}",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--temp-dir={temp_dir}",
        "--num-cpus=1",
        "--disable-usage-stats",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    _, stderr = proc.communicate(timeout=180)
    other = OtherRay(proc.pid, gcs, dash)
    if proc.returncode != 0:
        kill_session(proc.pid)
        raise AssertionError(stderr.decode()[-2000:])
    return other


def short_temp_dir(tag: str) -> Path:
    """A fresh temp dir with a short path (Ray's socket paths must fit 107 bytes)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"kt-{tag}-"))


def platform_settings(data_dir: Path, **extra: object) -> object:
    """Settings with every fixed port of the platform free, and a Ray temp dir of its own."""
    from kitrade.config import Settings

    return Settings(
        data_dir=data_dir,
        embedded_pg_port=free_port(),
        port=free_port(),
        ray_port=free_port(),
        ray_dashboard_port=free_port(),
        ray_client_port=free_port(),
        ray_agent_port=free_port(),
        ray_temp_dir=short_temp_dir("ray"),
        _env_file=None,
        **extra,
    )


# --- without a cluster --------------------------------------------------------------


def test_a_taken_port_is_refused_naming_its_setting(tmp_path):
    from kitrade.errors import ConfigError
    from kitrade.platform import check_ports_free

    settings = platform_settings(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", settings.ray_dashboard_port))
        busy.listen()
        with pytest.raises(ConfigError) as exc:
            check_ports_free(settings)
    assert f"{settings.ray_dashboard_port} (KITRADE_RAY_DASHBOARD_PORT)" in exc.value.message
    check_ports_free(settings)  # free again: no error


def test_two_settings_on_one_port_are_refused(tmp_path):
    from kitrade.errors import ConfigError
    from kitrade.platform import check_ports_free

    settings = platform_settings(tmp_path)
    clash = settings.model_copy(update={"ray_client_port": settings.port})
    with pytest.raises(ConfigError, match="KITRADE_PORT and KITRADE_RAY_CLIENT_PORT"):
        check_ports_free(clash)


def test_an_unreadable_record_counts_as_none_and_a_written_one_reads_back(tmp_path):
    from kitrade.cluster import PLATFORM_FILE, PlatformRecord, platform_record, write_platform

    (tmp_path / PLATFORM_FILE).write_text("{not json")
    assert platform_record(tmp_path) is None
    record = PlatformRecord(
        address="127.0.0.1:1",
        gcs_port=1,
        dashboard_port=2,
        client_port=3,
        temp_dir=str(tmp_path / "ray"),
        session_dir=str(tmp_path / "ray" / "session_1"),
        process_session=123,
        auth_mode="token",
        token_path=str(TOKEN),
        serve_url="http://127.0.0.1:4",
        pg_started=True,
        pg_port=5,
        owner_pid=6,
    )
    write_platform(tmp_path, record)
    assert platform_record(tmp_path) == record
    assert (tmp_path / PLATFORM_FILE).stat().st_mode & 0o077 == 0  # the user's only


def test_the_default_ray_temp_dir_is_short_and_one_per_data_dir(tmp_path):
    from kitrade.config import Settings

    a = Settings(data_dir=tmp_path / "a", _env_file=None).resolved_ray_temp_dir
    b = Settings(data_dir=tmp_path / "b", _env_file=None).resolved_ray_temp_dir
    assert a != b and len(str(a)) < 40


# --- with real clusters: kitrade's and another ------------------------------------------


@pytest.fixture(scope="module")
def kitrade_ray(tmp_path_factory, other_ray) -> Iterator[tuple[object, object]]:
    """kitrade's own cluster, started by ``start_ray`` and recorded; stopped by its session."""
    from kitrade.cluster import write_platform
    from kitrade.platform import check_ports_free, start_ray

    settings = platform_settings(tmp_path_factory.mktemp("kt"))
    check_ports_free(settings)
    spawned: list[int] = []
    try:
        record = start_ray(settings, num_cpus=1, on_spawn=spawned.append)
        assert record is not None
        write_platform(settings.data_dir, record)
        yield settings, record
    finally:
        for sid in spawned:
            kill_session(sid)


def _probe_in_subprocess(settings: object, env: dict[str, str]) -> dict:
    """``platform_running`` and a task over ``connect_platform``, from a fresh process."""
    code = (
        "import json, sys, ray\n"
        "from kitrade.config import Settings\n"
        "from kitrade.cluster import connect_platform, platform_running\n"
        "s = Settings(data_dir=sys.argv[1], _env_file=None)\n"
        "out = {'running': platform_running(s)}\n"
        "out['connected'] = connect_platform(s)\n"
        "out['task'] = ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=120)\n"
        "out['gcs_port'] = int(ray.get_runtime_context().gcs_address.rsplit(':', 1)[1])\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(settings.data_dir)],  # type: ignore[attr-defined]
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, res.stderr[-3000:]
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("auth_env", ["unset", "token"])
def test_the_recorded_cluster_is_found_and_joined_whatever_ray_auth_mode_says(
    kitrade_ray, auth_env
):
    settings, record = kitrade_ray
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "KITRADE_"))
    }
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    if auth_env == "token":
        env["RAY_AUTH_MODE"] = "token"
    out = _probe_in_subprocess(settings, env)
    assert out == {
        "running": True,
        "connected": True,
        "task": 42,
        "gcs_port": record.gcs_port,
    }


def test_a_cluster_answering_with_another_session_is_not_the_platform(kitrade_ray, other_ray):
    from kitrade.cluster import cluster_answers

    _, record = kitrade_ray
    assert cluster_answers(record)
    impostor = record.model_copy(update={"dashboard_port": other_ray.dashboard_port})
    assert not cluster_answers(impostor)  # answers, but as another session


def test_a_failed_start_stops_only_what_it_spawned(tmp_path, other_ray, kitrade_ray):
    """``ray start`` on the other cluster's GCS port fails; stopping what it spawned (its
    process session) leaves both running clusters answering."""
    from kitrade.cluster import cluster_answers
    from kitrade.errors import ConfigError
    from kitrade.platform import start_ray, stop_ray

    _, record = kitrade_ray
    settings = platform_settings(tmp_path).model_copy(update={"ray_port": other_ray.gcs_port})
    spawned: list[int] = []
    try:
        with pytest.raises(ConfigError, match="ray start failed"):
            start_ray(settings, num_cpus=1, on_spawn=spawned.append)
    finally:
        for sid in spawned:
            stop_ray(sid, grace_s=10)
    assert len(spawned) == 1 and session_members(spawned[0]) == []
    assert other_ray.answers() and cluster_answers(record)


def test_stop_ray_stops_only_the_recorded_cluster_and_names_the_other(other_ray, kitrade_ray):
    from kitrade.cluster import cluster_answers, running_platform
    from kitrade.platform import other_clusters, stop_ray

    settings, record = kitrade_ray
    others = other_clusters(record.process_session)
    assert other_ray.gcs_port in {c.gcs_port for c in others}
    assert record.gcs_port not in {c.gcs_port for c in others}
    assert stop_ray(record.process_session, record.session_dir) > 0
    assert session_members(record.process_session) == []
    assert not cluster_answers(record) and running_platform(settings) is None
    assert other_ray.answers()
    # a reused session id does not make a stranger's processes ours
    assert stop_ray(other_ray.process_session, record.session_dir) == 0
    assert other_ray.answers()
