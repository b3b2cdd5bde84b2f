"""Bringing the whole platform up and down: database, Ray cluster, Serve application.

A local cluster is started with ``ray start --head`` on the ports the settings
name (``KITRADE_RAY_*``), in a temp dir of its own, as the leader of a new
process session: every process of that cluster (GCS, raylet, dashboard,
agents, workers, Serve replicas) belongs to that session, so kitrade stops its
own cluster by that session id and leaves every other Ray cluster on the
machine alone (``ray stop`` would end them all). The dashboard and job API
listen on 127.0.0.1 only, and Ray's token auth is on (``RAY_AUTH_MODE=token``)
for them and for the GCS and raylet ports, which Ray binds on every interface
and offers no option to narrow. The cluster outlives the CLI for
``kitrade up --detach`` and serves ``ray job submit``. The settings are
exported into the cluster's environment, so replicas and tasks read the same
configuration without secrets travelling in the Serve config. With
``RAY_ADDRESS`` set, kitrade joins that cluster and starts none.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from kitrade.cluster import PlatformRecord
from kitrade.config import env_var_name
from kitrade.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    import psutil  # type: ignore[import-untyped]

    from kitrade.config import Settings

__all__ = [
    "OtherCluster",
    "check_ports_free",
    "cluster_processes",
    "deploy",
    "other_clusters",
    "settings_env",
    "start_ray",
    "stop_all_ray",
    "stop_ray",
    "undeploy",
]

_log = logging.getLogger(__name__)
APP_NAME = "kitrade"


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables reproducing ``settings`` (set fields only)."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "1" if value else "0"
        env[env_var_name(name)] = str(value)
    return env


def _ray_bin() -> str:
    candidate = Path(sys.executable).with_name("ray")
    found = str(candidate) if candidate.exists() else shutil.which("ray")
    if not found:
        raise ConfigError("ray CLI not found next to the Python interpreter nor on PATH")
    return found


SERVE_CPU_RESERVE = 2  # logical CPUs added for the Serve replicas' reservations


def _ports(settings: Settings) -> dict[str, int]:
    """Each fixed port the platform listens on, by the setting that moves it."""
    return {
        "KITRADE_RAY_PORT": settings.ray_port,
        "KITRADE_RAY_DASHBOARD_PORT": settings.ray_dashboard_port,
        "KITRADE_RAY_CLIENT_PORT": settings.ray_client_port,
        "KITRADE_RAY_AGENT_PORT": settings.ray_agent_port,
        "KITRADE_PORT": settings.port,
    }


def _port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` on any interface (Ray binds its GCS on all)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is no listener
        try:
            s.bind(("0.0.0.0", port))  # noqa: S104 - a probe, closed at once
        except OSError:
            return False
    return True


def check_ports_free(settings: Settings) -> None:
    """``ConfigError`` naming each fixed port of the platform that is taken, and its setting.

    Run before anything starts, so a clash refuses the start instead of half-starting.
    """
    ports = _ports(settings)
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            raise ConfigError(f"{name} and {seen[port]} are both {port}: give each its own port")
        seen[port] = name
    busy = [f"{port} ({name})" for name, port in ports.items() if not _port_free(port)]
    if busy:
        raise ConfigError(
            "ports in use by another process (another Ray cluster or kitrade platform?): "
            + ", ".join(busy)
            + "; set those variables to free ports"
        )


def _token_path(env: dict[str, str]) -> Path:
    """The token file of the cluster: generated at Ray's default path when missing."""
    custom = env.get("RAY_AUTH_TOKEN_PATH")
    path = Path(custom) if custom else Path.home() / ".ray" / "auth_token"
    env.pop("RAY_AUTH_TOKEN", None)  # the cluster and its record use the file's token
    if path.exists():
        return path
    if custom:
        raise ConfigError(f"RAY_AUTH_TOKEN_PATH={custom}: expected a token file, found none")
    res = subprocess.run(
        [_ray_bin(), "get-auth-token", "--generate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0 or not path.exists():
        raise ConfigError(f"could not generate a Ray auth token: {res.stderr.strip()[-500:]}")
    return path


def _ray_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ) | settings_env(settings)
    # A dead HTTP proxy is replaced after 3 failed health checks: 2 s apart, not 10 s.
    env.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S", "2")
    env.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "2")
    # Token auth on for every RPC and HTTP entry point (GCS, raylet, dashboard, job API),
    # whatever Ray's default for this version.
    if env.get("RAY_AUTH_MODE", "token") != "token":
        _log.warning(
            "RAY_AUTH_MODE=%s: the local Ray cluster starts without token authentication",
            env["RAY_AUTH_MODE"],
        )
    env.setdefault("RAY_AUTH_MODE", "token")
    return env


def _start_command(settings: Settings, num_cpus: int | None, num_gpus: float | None) -> list[str]:
    if num_cpus is None:
        # The Serve replicas reserve about 1.25 CPUs (gateway, data, analysis 0.25 each,
        # forecast 0.5) but mostly wait; without these extra logical CPUs a 2-core
        # machine could not schedule a 1-CPU training task while the API is up.
        num_cpus = (os.cpu_count() or 1) + SERVE_CPU_RESERVE
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={settings.ray_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={settings.ray_dashboard_port}",
        "--include-dashboard=true",
        f"--ray-client-server-port={settings.ray_client_port}",
        f"--dashboard-agent-listen-port={settings.ray_agent_port}",
        f"--temp-dir={settings.resolved_ray_temp_dir}",
        "--disable-usage-stats",
        f"--num-cpus={num_cpus}",
    ]
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    return cmd


def start_ray(
    settings: Settings,
    *,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
    on_spawn: Callable[[int], None] | None = None,
) -> PlatformRecord | None:
    """Start a local head node of kitrade's own, unless ``RAY_ADDRESS`` names one to join.

    Args:
        settings: configuration (ports, temp dir, the environment exported to the cluster).
        num_cpus: logical CPUs (default: the machine's plus a reserve for Serve).
        num_gpus: logical GPUs (default: Ray's detection).
        on_spawn: called with the new process session's id as soon as ``ray start`` runs,
            so a caller interrupted mid-start can stop exactly what was spawned.

    Returns:
        The record of the started cluster (``pg_started`` False: the caller sets it), or
        None when ``RAY_ADDRESS`` is set.

    Raises:
        ConfigError: ``ray start`` failed; its processes may be left for the caller to stop.
    """
    if os.environ.get("RAY_ADDRESS"):
        return None
    env = _ray_env(settings)
    token = _token_path(env) if env["RAY_AUTH_MODE"] == "token" else None
    if token is not None:
        env["RAY_AUTH_TOKEN_PATH"] = str(token)
    cmd = _start_command(settings, num_cpus, num_gpus)
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if on_spawn is not None:
        on_spawn(proc.pid)
    _, stderr = proc.communicate(timeout=180)
    if proc.returncode != 0:
        raise ConfigError(f"ray start failed: {stderr.strip()[-1000:]}")
    return PlatformRecord(
        address=f"127.0.0.1:{settings.ray_port}",
        gcs_port=settings.ray_port,
        dashboard_port=settings.ray_dashboard_port,
        client_port=settings.ray_client_port,
        temp_dir=str(settings.resolved_ray_temp_dir),
        session_dir=_session_dir(proc.pid),
        process_session=proc.pid,
        auth_mode="token" if token is not None else "disabled",
        token_path=None if token is None else str(token),
        serve_url=f"http://{settings.host}:{settings.port}",
        pg_started=False,
        pg_port=settings.embedded_pg_port if settings.embedded_db else None,
        owner_pid=os.getpid(),
    )


def _arg(cmdline: list[str], flag: str) -> str | None:
    """The value of ``--flag=value`` in a command line."""
    prefix = f"--{flag}="
    return next((a[len(prefix) :] for a in cmdline if a.startswith(prefix)), None)


def _gcs_server(procs: list[psutil.Process]) -> psutil.Process | None:
    return next((p for p in procs if p.info["name"] == "gcs_server"), None)


def _session_dir(process_session: int) -> str:
    gcs = _gcs_server(cluster_processes(process_session))
    found = None if gcs is None else _arg(gcs.info["cmdline"] or [], "session-dir")
    if found is None:
        raise ConfigError("ray start succeeded but its GCS process was not found")
    return found


def _processes() -> list[tuple[int, psutil.Process]]:
    """(process session id, process) of every live process this user can see."""
    import psutil  # only start and stop look at processes

    out = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            out.append((os.getsid(p.pid), p))
        except (ProcessLookupError, PermissionError):
            continue
    return out


def cluster_processes(process_session: int, session_dir: str | None = None) -> list[Any]:
    """The live processes of the cluster started as process session ``process_session``.

    With ``session_dir``, the processes count only if one of them names that session dir
    on its command line (a process session id could have been reused by an unrelated
    program since).
    """
    procs = [p for sid, p in _processes() if sid == process_session]
    if session_dir is not None and not any(
        session_dir in " ".join(p.info["cmdline"] or []) for p in procs
    ):
        return []
    return procs


def _stop_group(procs: list[psutil.Process], *, force: bool, grace_s: float) -> None:
    """SIGTERM (SIGKILL with ``force``) ``procs``; SIGKILL what is left after ``grace_s``."""
    import psutil  # only start and stop look at processes

    for p in procs:
        try:
            if force:
                p.kill()
            else:
                p.terminate()
        except psutil.NoSuchProcess:
            continue
    deadline = time.monotonic() + grace_s
    alive = procs
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _alive(p)]
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue


def _alive(p: psutil.Process) -> bool:
    import psutil  # only start and stop look at processes

    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_ray(
    process_session: int,
    session_dir: str | None = None,
    *,
    force: bool = False,
    grace_s: float = 30,
) -> int:
    """Stop the cluster kitrade started as process session ``process_session``, only it.

    In Ray's own order (``ray stop``): raylet, then every other process, then the GCS.

    Args:
        process_session: the session id from the platform record (or ``on_spawn``).
        session_dir: the cluster's session dir, checked against the processes found (None
            only right after a failed start, before it is known).
        force: SIGKILL at once (a hard stop, as of a crashed machine).
        grace_s: how long the processes have to exit before SIGKILL.

    Returns:
        How many processes were stopped.
    """
    procs = cluster_processes(process_session, session_dir)
    if not procs:
        return 0
    raylets = [p for p in procs if p.info["name"] == "raylet"]
    gcs = [p for p in procs if p.info["name"] == "gcs_server"]
    rest = [p for p in procs if p not in raylets and p not in gcs]
    for group in (raylets, rest, gcs):
        _stop_group(group, force=force, grace_s=grace_s / 3)
    # workers the raylet spawned while it was stopping (the session is known to be ours)
    late = cluster_processes(process_session)
    _stop_group(late, force=True, grace_s=5)
    return len(procs) + len(late)


@dataclass(frozen=True)
class OtherCluster:
    """A Ray cluster on this machine that kitrade's record does not name."""

    gcs_pid: int
    gcs_port: int | None
    session_dir: str | None


def other_clusters(process_session: int | None) -> list[OtherCluster]:
    """Every Ray cluster on this machine (found by its GCS process) but the recorded one."""
    found = []
    for sid, p in _processes():
        if p.info["name"] != "gcs_server" or sid == process_session:
            continue
        cmd = p.info["cmdline"] or []
        port = _arg(cmd, "gcs_server_port")
        number = int(port) if port and port.isdigit() and port != "0" else None  # 0: random
        found.append(OtherCluster(p.pid, number, _arg(cmd, "session-dir")))
    return found


def stop_all_ray() -> None:
    """``ray stop``: every Ray process of this user on the machine, whoever started it."""
    subprocess.run([_ray_bin(), "stop"], capture_output=True, text=True, timeout=120)


def deploy(settings: Settings, args: dict[str, Any] | None = None) -> None:
    """Run the Serve application on the connected cluster at ``KITRADE_HOST:KITRADE_PORT``."""
    from ray import serve  # heavy (ray): kept out of light commands' start-up

    # Imports ray serve and fastapi: only serving needs them.
    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.gateway import build_app

    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(AppArgs(**(args or {}))), name=APP_NAME, route_prefix="/", blocking=False)


def undeploy() -> None:
    """Shut Serve down on the connected cluster."""
    from ray import serve  # heavy (ray): kept out of light commands' start-up

    serve.shutdown()
