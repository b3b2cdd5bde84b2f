"""The progress actor of the training layer.

``ProgressActor`` is a named, detached actor in namespace ``kitrade``. It is
the single writer of training progress and keeps no state of its own beyond a
connection pool: every update goes to PostgreSQL, so killing the actor (Ray
restarts it) or restarting the cluster loses nothing; a new actor simply
reads the tables again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import ray

from kitrade.cluster import detached_actor
from kitrade.data.db import Database, conninfo_for
from kitrade.data.progress import (
    ProgressUpdate,
    finish_run,
    load_run,
    persist_update,
    settle,
    start_run,
)

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = [
    "PROGRESS_ACTOR",
    "ProgressActor",
    "get_progress_actor",
]

PROGRESS_ACTOR = "kitrade-progress"
_log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)
class ProgressActor:
    """Persists progress updates; answers progress snapshots."""

    def __init__(self, settings: Settings) -> None:
        self._db = Database(
            conninfo_for(settings), min_size=1, max_size=2, timeout_s=settings.db_connect_timeout_s
        )

    def ping(self) -> bool:
        """Liveness probe."""
        return True

    def update(self, update: dict[str, Any]) -> bool:
        """Apply one ``ProgressUpdate`` (as a dict); True if it moved forward."""
        with self._db.connection() as conn:
            return persist_update(conn, ProgressUpdate(**update))

    def update_many(self, updates: list[dict[str, Any]]) -> int:
        """Apply several updates in one transaction; returns how many applied."""
        with self._db.connection() as conn:
            return sum(persist_update(conn, ProgressUpdate(**u)) for u in updates)

    def settle(self, run_id: str, symbol: str, version: str | None, detail: str) -> bool:
        """Record the gate's verdict on a done symbol (``both`` scope)."""
        with self._db.connection() as conn:
            return settle(conn, run_id=run_id, symbol=symbol, version=version, detail=detail)

    def start_run(self, run_id: str, kind: str, trigger: str, params: dict[str, Any]) -> None:
        """Record a run."""
        with self._db.connection() as conn:
            start_run(conn, run_id=run_id, kind=kind, trigger=trigger, params=params)

    def finish_run(self, run_id: str, status: str) -> None:
        """Mark a run finished."""
        with self._db.connection() as conn:
            finish_run(conn, run_id=run_id, status=status)

    def snapshot(self, run_id: str | None = None) -> dict[str, Any]:
        """The run's progress (latest run by default) as JSON-able dict."""
        with self._db.connection() as conn:
            return load_run(conn, run_id=run_id).model_dump(mode="json")


def get_progress_actor(settings: Settings) -> ray.actor.ActorHandle:
    """The progress actor, created (detached) if it does not exist yet."""
    return detached_actor(ProgressActor, PROGRESS_ACTOR, settings)
