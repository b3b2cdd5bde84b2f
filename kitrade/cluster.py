"""Connecting to Ray: an existing cluster (``RAY_ADDRESS``) or a local one.

The local cluster binds its dashboard to 127.0.0.1; only the Serve HTTP port
is meant to be exposed.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.actor import ActorHandle

__all__ = ["NAMESPACE", "cluster_cpus", "cluster_gpus", "connect", "detached_actor"]

NAMESPACE = "kitrade"
_log = logging.getLogger(__name__)


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
