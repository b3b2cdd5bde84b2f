"""Connecting to Ray, and what kitrade knows of the cluster it started.

The local cluster binds its dashboard to 127.0.0.1; only the Serve HTTP port
is meant to be exposed.

``kitrade up`` records what it started in ``<data dir>/platform.json`` (a
``PlatformRecord``): the cluster's address, ports, session dir, the process
session every one of its processes belongs to, how it authenticates, the Serve
URL and whether it started the embedded PostgreSQL. "Is the platform running?"
is answered from that record and a token-authenticated probe of the recorded
cluster, never from the caller's environment (``ray status`` fails on a
token-auth cluster when ``RAY_AUTH_MODE`` is unset, and finds clusters kitrade
did not start).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from kitrade.config import Settings

__all__ = [
    "NAMESPACE",
    "PLATFORM_FILE",
    "PlatformRecord",
    "clear_platform",
    "cluster_answers",
    "cluster_cpus",
    "cluster_gpus",
    "connect",
    "connect_platform",
    "connect_record",
    "detached_actor",
    "platform_record",
    "platform_running",
    "running_platform",
    "write_platform",
]

NAMESPACE = "kitrade"
PLATFORM_FILE = "platform.json"
_log = logging.getLogger(__name__)


class PlatformRecord(BaseModel):
    """What one ``kitrade up`` started, as written to ``<data dir>/platform.json``.

    Attributes:
        address: the cluster's GCS address (``127.0.0.1:<port>``).
        gcs_port: GCS port.
        dashboard_port: dashboard and job API port (127.0.0.1).
        client_port: Ray Client server port.
        temp_dir: Ray's temp dir for this cluster.
        session_dir: the cluster's session dir (its name is the session's name).
        process_session: the process session id (``getsid``) of every Ray process of the
            cluster: ``ray start`` runs as the leader of a new session, and every process
            it and the raylet spawn stays in it.
        auth_mode: ``token`` or ``disabled``.
        token_path: the file holding the cluster's token (``token`` mode).
        serve_url: the HTTP API's base URL.
        pg_started: this ``up`` started the embedded PostgreSQL.
        pg_port: the embedded PostgreSQL's port (None: external database).
        owner_pid: the ``kitrade up`` process that wrote the record.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    gcs_port: int
    dashboard_port: int
    client_port: int
    temp_dir: str
    session_dir: str
    process_session: int
    auth_mode: Literal["token", "disabled"]
    token_path: str | None
    serve_url: str
    pg_started: bool
    pg_port: int | None
    owner_pid: int

    @property
    def session_name(self) -> str:
        """The Ray session's name (``session_<date>_<pid>``)."""
        return Path(self.session_dir).name

    @property
    def dashboard_url(self) -> str:
        """The Ray dashboard's base URL."""
        return f"http://127.0.0.1:{self.dashboard_port}"


def platform_record(data_dir: Path) -> PlatformRecord | None:
    """The record in ``data_dir`` (None: none, or unreadable; the latter is logged)."""
    path = data_dir / PLATFORM_FILE
    try:
        return PlatformRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as exc:
        _log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def write_platform(data_dir: Path, record: PlatformRecord) -> None:
    """Write ``record`` to ``data_dir`` atomically, readable by the user only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / PLATFORM_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(record.model_dump_json(indent=2))
    os.replace(tmp, path)


def clear_platform(data_dir: Path) -> None:
    """Remove the record from ``data_dir`` (nothing if there is none)."""
    (data_dir / PLATFORM_FILE).unlink(missing_ok=True)


def _auth_header(record: PlatformRecord) -> dict[str, str]:
    if record.auth_mode != "token" or record.token_path is None:
        return {}
    try:
        token = Path(record.token_path).read_text(encoding="utf-8").strip()
    except OSError:
        return {}
    return {"Authorization": f"Bearer {token}"}


def cluster_answers(record: PlatformRecord, timeout_s: float = 10.0) -> bool:
    """Whether the recorded cluster answers as itself.

    Asks the dashboard's ``/api/version`` with the recorded token (read from its file,
    whatever the caller's environment holds) and checks that the session named in the
    answer is the recorded one, so a different cluster now on the same port does not
    count.
    """
    import httpx  # only the commands that look for a running platform need it

    try:
        res = httpx.get(
            f"{record.dashboard_url}/api/version",
            headers=_auth_header(record),
            timeout=timeout_s,
        )
        return res.status_code == 200 and res.json().get("session_name") == record.session_name
    except (httpx.HTTPError, ValueError):
        return False


def running_platform(settings: Settings) -> PlatformRecord | None:
    """The record of the platform running for ``settings.data_dir``, if its cluster answers."""
    record = platform_record(settings.data_dir)
    if record is None or not cluster_answers(record):
        return None
    return record


def platform_running(settings: Settings) -> bool:
    """Whether a platform is running for these settings.

    True when ``RAY_ADDRESS`` names a cluster to join (the caller chose it), or when the
    data dir's record names a cluster that answers the token-authenticated probe.
    """
    return bool(os.environ.get("RAY_ADDRESS")) or running_platform(settings) is not None


def connect_platform(settings: Settings) -> bool:
    """Connect to the running platform's cluster; False (and no connection) if none runs.

    ``RAY_ADDRESS`` set: that cluster. Otherwise the data dir's recorded cluster, if it
    answers the probe, joined with its recorded authentication (``connect_record``).
    """
    if os.environ.get("RAY_ADDRESS"):
        connect()
        return True
    record = running_platform(settings)
    if record is None:
        return False
    connect_record(record)
    return True


def connect_record(record: PlatformRecord) -> None:
    """Join the recorded cluster with its recorded authentication.

    ``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN_PATH`` are set in this process from the record
    (Ray reads them from the environment when it connects, and enables token auth for an
    explicit address only when told to), so the caller's own environment need not hold
    them.
    """
    from ray._raylet import (  # type: ignore[attr-defined]  # heavy (ray), untyped
        AuthenticationTokenLoader,
        Config,
    )

    os.environ["RAY_AUTH_MODE"] = record.auth_mode
    if record.token_path is not None:
        os.environ["RAY_AUTH_TOKEN_PATH"] = record.token_path
        os.environ.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file
    # Ray caches its config and token when first imported; re-read both from the
    # environment just set, as Ray's own ``_enable_token_auth`` does.
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    connect(address=record.address)


def connect(
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    address: str | None = None,
    dashboard: bool = False,
    runtime_env: dict[str, Any] | None = None,
) -> None:
    """``ray.init`` in namespace ``kitrade`` unless already connected.

    Args:
        num_cpus: CPUs of a new local cluster (ignored when joining one).
        num_gpus: logical GPUs of a new local cluster (tests use 1 to exercise
            fractional scheduling on a machine without a GPU).
        address: cluster to join; default ``RAY_ADDRESS`` or a new local cluster.
        dashboard: start the Ray dashboard (bound to 127.0.0.1) on a new cluster.
        runtime_env: passed to ``ray.init``.
    """
    import ray  # heavy (ray): kept out of light commands' start-up

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {
        "namespace": NAMESPACE,
        "log_to_driver": False,
        "configure_logging": True,
        "logging_level": logging.WARNING,
    }
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if address:
        ray.init(address=address, **kwargs)
        return
    ray.init(
        address="local",  # a new cluster of our own, even if `ray start` left one running
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        **kwargs,
    )


def cluster_gpus() -> float:
    """GPUs the connected cluster has (logical, summed over nodes)."""
    import ray  # heavy (ray): kept out of light commands' start-up

    return float(ray.cluster_resources().get("GPU", 0.0))


def cluster_cpus() -> float:
    """CPUs the connected cluster has (logical, summed over nodes)."""
    import ray  # heavy (ray): kept out of light commands' start-up

    return float(ray.cluster_resources().get("CPU", 0.0))


def largest_node_cpus() -> float:
    """CPUs of the connected cluster's largest live node: the most one task can get."""
    import ray  # heavy (ray): kept out of light commands' start-up

    cpus = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    return float(max(cpus, default=0.0))


def detached_actor(actor_cls: Any, name: str, *args: Any) -> ActorHandle[Any]:
    """The named, detached actor in namespace ``kitrade``, created from ``args`` if missing.

    Every long-lived actor (progress, retrain scheduler, knowledge) is reached
    this way, so a second caller gets the running actor instead of a duplicate
    and the actor outlives the driver that created it.

    Args:
        actor_cls: the ``@ray.remote`` class (typed ``Any``: mypy sees the undecorated class).
        name: the actor's name in the namespace.
        *args: constructor arguments, used only when the actor is created.
    """
    return actor_cls.options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(*args)
