"""Retraining triggers: model age, new-bars events, drift. Pure rules plus their SQL.

``find_triggers`` looks at every active symbol and says which need retraining
and why:

- ``no_model``: the symbol has bars but no active version;
- ``age``: the active version is older than ``NHITS_AUTO_RETRAIN_DAYS``;
- ``new_bars``: at least ``KITRADE_RETRAIN_NEW_BARS_EVENTS`` ``bars_ingested``
  events reach past the active version's data end;
- ``drift``: over the bars that arrived after the model's data end, its live
  MAE exceeds the validation MAE by ``KITRADE_RETRAIN_DRIFT_FACTOR`` or its
  live coverage of the 80 % interval falls below
  ``KITRADE_RETRAIN_MIN_COVERAGE_80`` (``drift_check``; needs a forecast, so
  the scheduler actor passes a ``forecaster``).

Each trigger is recorded in ``retrain_triggers`` with its run id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psycopg
import ray

from kitrade.cluster import detached_actor
from kitrade.data.bars import get_bars
from kitrade.data.db import connect, conninfo_for
from kitrade.data.events import count_ingests_past
from kitrade.data.retrain_triggers import insert_trigger, list_triggers
from kitrade.data.symbols import list_symbols
from kitrade.training.nhits import FittedModel
from kitrade.training.registry import active_version
from kitrade.training.runs import train_all
from kitrade.training.tasks import new_run_id

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.schemas import Symbol
    from kitrade.training.registry import ModelVersion

__all__ = [
    "RETRAIN_SCHEDULER",
    "RetrainScheduler",
    "Trigger",
    "check_triggers",
    "drift_check",
    "find_triggers",
    "get_retrain_scheduler",
    "list_triggers",
    "record_triggers",
]

_log = logging.getLogger(__name__)

#: forecaster(version) -> frame with ds, mean, lo_80, hi_80 from the version's data end
Forecaster = Callable[["ModelVersion"], pd.DataFrame]


@dataclass(frozen=True)
class Trigger:
    """A reason to retrain one symbol."""

    symbol: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


def drift_check(
    forecast: pd.DataFrame,
    actual: pd.DataFrame,
    *,
    val_mae: float | None,
    factor: float,
    min_coverage_80: float,
    min_points: int = 3,
) -> dict[str, Any] | None:
    """Compare a forecast made at the model's data end with what happened.

    Args:
        forecast: ``ds, mean, lo_80, hi_80``.
        actual: ``ds, y`` of the bars after the model's data end.
        val_mae: the model's validation MAE (from its evaluation).
        factor: live MAE above ``factor * val_mae`` is drift.
        min_coverage_80: live coverage of the 80 % interval below this is drift.
        min_points: fewer overlapping points say nothing.

    Returns:
        The drift detail (live MAE, coverage, …) when drifting, else None.
    """
    merged = forecast.merge(actual, on="ds", how="inner")
    if len(merged) < min_points:
        return None
    err = np.abs(merged["y"].to_numpy() - merged["mean"].to_numpy())
    live_mae = float(err.mean())
    inside = (merged["y"] >= merged["lo_80"]) & (merged["y"] <= merged["hi_80"])
    coverage = float(inside.mean())
    detail = {
        "points": len(merged),
        "live_mae": live_mae,
        "val_mae": val_mae,
        "live_coverage_80": coverage,
    }
    if val_mae is not None and val_mae > 0 and live_mae > factor * val_mae:
        return detail | {
            "why": f"live MAE {live_mae:.4g} > {factor:g} x validation MAE {val_mae:.4g}"
        }
    if coverage < min_coverage_80:
        return detail | {"why": f"live 80% coverage {coverage:.0%} < {min_coverage_80:.0%}"}
    return None


def find_triggers(
    conn: psycopg.Connection,
    *,
    settings: Settings,
    now: datetime | None = None,
    forecaster: Forecaster | None = None,
) -> list[Trigger]:
    """Symbols that need retraining, one trigger each (the first reason that applies)."""
    now = now or datetime.now(UTC)
    out: list[Trigger] = []
    for sym in list_symbols(conn, active_only=True):
        if sym.bars == 0:
            continue
        active = active_version(conn, symbol=sym.symbol)
        if active is None:
            out.append(Trigger(sym.symbol, "no_model", {"bars": sym.bars}))
            continue
        trigger = (
            _age_trigger(sym.symbol, active, settings, now)
            or _new_bars_trigger(conn, sym.symbol, active, settings)
            or _drift_trigger(conn, sym, active, settings, forecaster)
        )
        if trigger is not None:
            out.append(trigger)
    return out


def _age_trigger(
    symbol: str, active: ModelVersion, settings: Settings, now: datetime
) -> Trigger | None:
    age = now - active.created_at
    if age < timedelta(days=settings.nhits_auto_retrain_days):
        return None
    detail = {
        "version": active.version,
        "age_days": round(age.total_seconds() / 86400, 2),
        "limit_days": settings.nhits_auto_retrain_days,
    }
    return Trigger(symbol, "age", detail)


def _new_bars_trigger(
    conn: psycopg.Connection, symbol: str, active: ModelVersion, settings: Settings
) -> Trigger | None:
    events = count_ingests_past(conn, symbol=symbol, ts=active.data_end)
    if events < settings.retrain_new_bars_events:
        return None
    detail = {
        "version": active.version,
        "events": events,
        "threshold": settings.retrain_new_bars_events,
        "data_end": active.data_end.isoformat(),
    }
    return Trigger(symbol, "new_bars", detail)


def _drift_trigger(
    conn: psycopg.Connection,
    sym: Symbol,
    active: ModelVersion,
    settings: Settings,
    forecaster: Forecaster | None,
) -> Trigger | None:
    if forecaster is None or sym.last_bar is None or sym.last_bar <= active.data_end:
        return None
    after = get_bars(conn, symbol=sym.symbol, start=active.data_end + timedelta(microseconds=1))
    actual = pd.DataFrame({"ds": after["ts"], "y": after["close"]})
    val_mae = (active.metrics.get("model") or {}).get("mae")
    drift = drift_check(
        forecaster(active),
        actual,
        val_mae=val_mae,
        factor=settings.retrain_drift_factor,
        min_coverage_80=settings.retrain_min_coverage_80,
    )
    return (
        None if drift is None else Trigger(sym.symbol, "drift", drift | {"version": active.version})
    )


def check_triggers(settings: Settings, *, forecaster: Forecaster | None = None) -> list[Trigger]:
    """``find_triggers`` on a connection of its own (what the scheduler runs each interval).

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
    """
    with connect(conninfo_for(settings), autocommit=True, where="retrain check") as conn:
        return find_triggers(conn, settings=settings, forecaster=forecaster)


def record_triggers(
    conn: psycopg.Connection, triggers: list[Trigger], *, run_id: str | None
) -> None:
    """Store triggers with the run that answers them."""
    for t in triggers:
        insert_trigger(conn, symbol=t.symbol, reason=t.reason, detail=t.detail, run_id=run_id)


RETRAIN_SCHEDULER = "kitrade-retrain"


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=4)  # type: ignore[call-overload]
class RetrainScheduler:
    """Checks retraining triggers every ``KITRADE_RETRAIN_CHECK_INTERVAL_S`` and trains.

    Threaded (``max_concurrency``) so ``status`` answers while a check trains.
    Triggers and the run that answers them are recorded in PostgreSQL and the
    run carries the reasons as its trigger, so ``kitrade progress`` shows why.
    """

    def __init__(self, settings: Settings, overrides: dict[str, Any] | None = None) -> None:
        self._settings = settings
        self._overrides = overrides
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] = {"checked_at": None, "triggers": [], "run_id": None}

    def check_now(self, use_drift: bool = True) -> dict[str, Any]:
        """Find triggers, record them, train the triggered symbols; returns what happened."""
        with self._lock:  # one check at a time
            forecaster = _version_forecaster(self._settings) if use_drift else None
            triggers = check_triggers(self._settings, forecaster=forecaster)
            run_id = new_run_id() if triggers else None
            if triggers:
                with connect(conninfo_for(self._settings)) as conn:
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
        model = FittedModel.load(Path(version.artifact_path))
        if getattr(version, "scope", "symbol") == "shared":  # one artifact, several series
            return model.predict(model.series(version.symbol))
        return model.predict()

    return forecast


def get_retrain_scheduler(
    settings: Settings, overrides: dict[str, Any] | None = None
) -> ray.actor.ActorHandle:
    """The retrain scheduler actor, created (detached) if missing."""
    return detached_actor(RetrainScheduler, RETRAIN_SCHEDULER, settings, overrides)
