"""Training use cases: train on Ray, follow progress, list versions, promote, roll back, sweep.

``train`` and ``sweep`` launch Ray work on the connected cluster (the caller
connects: the CLI to its local or running cluster, a job to the job's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kitrade.data.progress import RunProgress, load_run
from kitrade.data.store import open_store
from kitrade.training import registry

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.db import Database
    from kitrade.training.registry import ModelVersion
    from kitrade.training.tasks import TrainAllReport
    from kitrade.training.tune import SweepResult

__all__ = [
    "new_run_id",
    "overrides_for",
    "prepare",
    "progress",
    "promote",
    "rollback",
    "start_retrain_scheduler",
    "sweep",
    "train",
    "train_best",
    "versions",
]


def overrides_for(max_steps: int | None, target: str | None = None) -> dict[str, Any] | None:
    """NHITS config overrides for a step cap and a target (None: the configured model as is)."""
    over: dict[str, Any] = {"max_steps": max_steps} if max_steps else {}
    if target is not None:
        over["target"] = target
    return over or None


def new_run_id() -> str:
    """A fresh training-run id (so a caller can follow the run while it trains)."""
    from kitrade.training.tasks import new_run_id as make  # ray + torch: only when training

    return make()


def prepare(settings: Settings) -> None:
    """Make sure the store is up and migrated before Ray tasks reach it."""
    open_store(settings).close()


def train(
    settings: Settings,
    symbols: Sequence[str] | None = None,
    *,
    force: bool = False,
    max_steps: int | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    on_update: Callable[[], None] | None = None,
    scope: str | None = None,
    target: str | None = None,
) -> TrainAllReport:
    """Train ``symbols`` (default: every active one) on the connected cluster, gate each version.

    Args:
        settings: configuration.
        symbols: names, or None for every active symbol.
        force: retrain even fresh models.
        max_steps: cap NHITS steps (None: the configured value).
        run_id: id of the run (default: a new one).
        trigger: recorded with the run (``manual``, ``job``, ...).
        on_update: called while waiting (a live view redraws).
        scope: ``symbol``, ``shared`` (one model per group: ``KITRADE_MODEL_GROUPS``, else
            per timeframe; a group with a member to train trains whole) or ``both`` (each
            symbol gets the better of the two); default ``settings.model_scope``.
        target: ``level`` or ``log_return`` (default ``settings.train_target``); training
            one target after the other gates each against the active version, so the better
            by the gate's rule ends active.
    """
    from kitrade.training.runs import train_all  # ray + torch: only when training

    return train_all(
        settings,
        symbols,
        force=force,
        overrides=overrides_for(max_steps, target),
        run_id=run_id,
        trigger=trigger,
        on_update=on_update,
        scope=scope,
    )


def progress(db: Database, *, run_id: str | None = None) -> RunProgress:
    """A run's progress (the latest by default) with percentages and time left."""
    with db.connection() as conn:
        return load_run(conn, run_id=run_id)


def versions(
    db: Database, *, symbols: Sequence[str] | None = None, limit: int = 100
) -> list[ModelVersion]:
    """Model versions, newest first per symbol (of ``symbols``, or all)."""
    with db.connection() as conn:
        if symbols is None:
            return registry.list_versions(conn, limit=limit)
        return [v for s in symbols for v in registry.list_versions(conn, symbol=s, limit=limit)]


def promote(db: Database, *, symbol: str, version: str) -> ModelVersion:
    """Make ``version`` the active model of ``symbol`` (overrides the gate)."""
    with db.connection() as conn:
        return registry.promote(conn, symbol=symbol, version=version)


def rollback(db: Database, *, symbol: str, to_version: str | None = None) -> ModelVersion:
    """Re-activate the previously active version of ``symbol`` (or ``to_version``)."""
    with db.connection() as conn:
        return registry.rollback(conn, symbol=symbol, to_version=to_version)


def sweep(
    settings: Settings,
    symbol: str,
    *,
    samples: int = 8,
    max_steps: int | None = None,
    max_concurrent: int | None = None,
    objective: str = "val_loss",
) -> SweepResult:
    """An ASHA sweep over the NHITS search space for ``symbol`` on the connected cluster; the
    best trial by ``objective`` (``val_loss`` or ``interval_score``, see ``tune.sweep``)."""
    from kitrade.training import tune  # ray tune + torch: only when sweeping

    return tune.sweep(
        settings,
        symbol,
        num_samples=samples,
        base=overrides_for(max_steps) or {},
        max_concurrent=max_concurrent,
        objective=objective,
    )


def train_best(
    settings: Settings, result: SweepResult, *, max_steps: int | None = None
) -> TrainAllReport:
    """Train a sweep's best configuration through the promotion gate."""
    from kitrade.training import tune  # ray tune + torch: only when training

    return tune.train_best(settings, result, base=overrides_for(max_steps) or {})


def start_retrain_scheduler(settings: Settings) -> None:
    """Start the retrain scheduler actor (age / new-bars / drift triggers) on the cluster."""
    from kitrade.training.retrain import get_retrain_scheduler  # ray: a cluster is connected

    get_retrain_scheduler(settings).start.remote()
