"""Ray actors of the training layer: the progress actor.

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

from kitrade.cluster import NAMESPACE

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = [
    "PROGRESS_ACTOR",
    "ProgressActor",
    "get_progress_actor",
    "RETRAIN_SCHEDULER",
    "RetrainScheduler",
    "get_retrain_scheduler",
]

PROGRESS_ACTOR = "kitrade-progress"
_log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)
class ProgressActor:
    """Persists progress updates; answers progress snapshots."""

    def __init__(self, settings: Settings) -> None:
        from kitrade.data.db import Database, conninfo_for

        self._db = Database(
            conninfo_for(settings), min_size=1, max_size=2, timeout_s=settings.db_connect_timeout_s
        )

    def ping(self) -> bool:
        """Liveness probe."""
        return True

    def update(self, update: dict[str, Any]) -> bool:
        """Apply one ``ProgressUpdate`` (as a dict); True if it moved forward."""
        from kitrade.training.progress import ProgressUpdate, persist_update

        with self._db.connection() as conn:
            return persist_update(conn, ProgressUpdate(**update))

    def update_many(self, updates: list[dict[str, Any]]) -> int:
        """Apply several updates in one transaction; returns how many applied."""
        from kitrade.training.progress import ProgressUpdate, persist_update

        with self._db.connection() as conn:
            return sum(persist_update(conn, ProgressUpdate(**u)) for u in updates)

    def start_run(self, run_id: str, kind: str, trigger: str, params: dict[str, Any]) -> None:
        """Record a run."""
        from kitrade.training.progress import start_run

        with self._db.connection() as conn:
            start_run(conn, run_id=run_id, kind=kind, trigger=trigger, params=params)

    def finish_run(self, run_id: str, status: str) -> None:
        """Mark a run finished."""
        from kitrade.training.progress import finish_run

        with self._db.connection() as conn:
            finish_run(conn, run_id=run_id, status=status)

    def snapshot(self, run_id: str | None = None) -> dict[str, Any]:
        """The run's progress (latest run by default) as JSON-able dict."""
        from kitrade.training.progress import load_run

        with self._db.connection() as conn:
            return load_run(conn, run_id=run_id).model_dump(mode="json")


def get_progress_actor(settings: Settings) -> ray.actor.ActorHandle:
    """The progress actor, created (detached) if it does not exist yet."""
    return ProgressActor.options(  # type: ignore[attr-defined]
        name=PROGRESS_ACTOR,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(settings)


RETRAIN_SCHEDULER = "kitrade-retrain"


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=4)
class RetrainScheduler:
    """Checks retraining triggers every ``KITRADE_RETRAIN_CHECK_INTERVAL_S`` and trains.

    Threaded (``max_concurrency``) so ``status`` answers while a check trains.
    Triggers and the run that answers them are recorded in PostgreSQL and the
    run carries the reasons as its trigger, so ``kitrade progress`` shows why.
    """

    def __init__(self, settings: Settings, overrides: dict[str, Any] | None = None) -> None:
        import threading

        self._settings = settings
        self._overrides = overrides
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] = {"checked_at": None, "triggers": [], "run_id": None}

    def check_now(self, use_drift: bool = True) -> dict[str, Any]:
        """Find triggers, record them, train the triggered symbols; returns what happened."""
        from datetime import UTC, datetime

        import psycopg

        from kitrade.data.db import conninfo_for
        from kitrade.training.retrain import find_triggers, record_triggers
        from kitrade.training.tasks import new_run_id, train_all

        with self._lock:  # one check at a time
            forecaster = _version_forecaster(self._settings) if use_drift else None
            with psycopg.connect(conninfo_for(self._settings), autocommit=True) as conn:
                triggers = find_triggers(conn, settings=self._settings, forecaster=forecaster)
            run_id = new_run_id() if triggers else None
            if triggers:
                with psycopg.connect(conninfo_for(self._settings)) as conn:
                    record_triggers(conn, triggers, run_id=run_id)
                reasons = ",".join(sorted({t.reason for t in triggers}))
                train_all(
                    self._settings,
                    [t.symbol for t in triggers],
                    force=True,
                    overrides=self._overrides,
                    run_id=run_id,
                    trigger=reasons,
                )
            self._last = {
                "checked_at": datetime.now(UTC).isoformat(),
                "triggers": [
                    {"symbol": t.symbol, "reason": t.reason, "detail": t.detail} for t in triggers
                ],
                "run_id": run_id,
            }
            return self._last

    def start(self, interval_s: float | None = None) -> bool:
        """Start the periodic loop (idempotent); True if it was started now."""
        import threading

        if self._thread is not None and self._thread.is_alive():
            return False
        interval = interval_s or self._settings.retrain_check_interval_s
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.check_now()
                except Exception as exc:  # noqa: BLE001 - keep the loop alive, log the cause
                    _log.error("retrain check failed: %s", exc)

        self._thread = threading.Thread(target=loop, name="retrain-loop", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop the periodic loop."""
        self._stop.set()

    def status(self) -> dict[str, Any]:
        """The last check and whether the loop runs."""
        return self._last | {"running": self._thread is not None and self._thread.is_alive()}


def _version_forecaster(settings: Settings) -> Any:
    """forecaster(version) for drift checks: load the artifact, forecast from its data end."""

    def forecast(version: Any) -> Any:
        from pathlib import Path

        from kitrade.training.nhits import FittedModel

        model = FittedModel.load(Path(version.artifact_path))
        return model.predict()

    return forecast


def get_retrain_scheduler(
    settings: Settings, overrides: dict[str, Any] | None = None
) -> ray.actor.ActorHandle:
    """The retrain scheduler actor, created (detached) if missing."""
    return RetrainScheduler.options(  # type: ignore[attr-defined]
        name=RETRAIN_SCHEDULER,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(settings, overrides)
