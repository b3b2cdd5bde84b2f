"""Hyper-parameter sweep results (``tune_results``), one row per trial."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    import psycopg

__all__ = ["record_trials"]


def record_trials(
    conn: psycopg.Connection, *, sweep_id: str, symbol: str, trials: Iterable[dict[str, Any]]
) -> None:
    """Store a sweep's trials (each: ``trial_id``, ``config``, ``val_loss``, ``status``)."""
    for t in trials:
        conn.execute(
            "INSERT INTO tune_results (sweep_id, symbol, trial_id, config, val_loss, status)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (sweep_id, symbol, str(t["trial_id"]), Jsonb(t["config"]), t["val_loss"], t["status"]),
        )
