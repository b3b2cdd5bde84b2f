"""Bringing the whole platform up and down: database, Ray cluster, Serve application.

A local cluster is started with ``ray start --head``: the dashboard and job API
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
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from kitrade.config import env_var_name
from kitrade.errors import ConfigError

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["DASHBOARD_PORT", "deploy", "settings_env", "start_ray", "stop_ray", "undeploy"]

_log = logging.getLogger(__name__)
DASHBOARD_PORT = 8265
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


def start_ray(
    settings: Settings,
    *,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
    state: dict | None = None,
) -> bool:
    """Start a local head node unless one runs or ``RAY_ADDRESS`` is set; True if started.

    ``state["ray"]`` is set just before ``ray start`` runs, so a caller interrupted
    mid-start knows it owns the cluster and stops it.
    """
    if os.environ.get("RAY_ADDRESS"):
        return False
    status = subprocess.run([_ray_bin(), "status"], capture_output=True, text=True, timeout=60)
    if status.returncode == 0:
        return False
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={DASHBOARD_PORT}",
        "--include-dashboard=true",
        "--disable-usage-stats",
    ]
    if num_cpus is None:
        # The Serve replicas reserve about 1.25 CPUs (gateway, data, analysis 0.25 each,
        # forecast 0.5) but mostly wait; without these extra logical CPUs a 2-core
        # machine could not schedule a 1-CPU training task while the API is up.
        num_cpus = (os.cpu_count() or 1) + SERVE_CPU_RESERVE
    cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    env = dict(os.environ) | settings_env(settings)
    # A dead HTTP proxy is replaced after 3 failed health checks: 2 s apart, not 10 s.
    env.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S", "2")
    env.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "2")
    # Token auth on for every RPC and HTTP entry point (GCS, raylet, dashboard, job API),
    # whatever Ray's default for this version; the token lives in ~/.ray/auth_token.
    if env.get("RAY_AUTH_MODE", "token") != "token":
        _log.warning(
            "RAY_AUTH_MODE=%s: the local Ray cluster starts without token authentication",
            env["RAY_AUTH_MODE"],
        )
    env.setdefault("RAY_AUTH_MODE", "token")
    if state is not None:
        state["ray"] = True
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if res.returncode != 0:
        raise ConfigError(f"ray start failed: {res.stderr.strip()[-1000:]}")
    return True


def stop_ray() -> None:
    """Stop the local Ray cluster (``ray stop``)."""
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
