"""Sync use cases: a sync and all of its follow-ups, and the sync status.

``run_sync`` is the one way bars arrive, for ``kitrade sync``, ``kitrade up``
and ``POST /api/v1/sync``: the data layer ingests the bars and records the
``bars_ingested`` events (which the retrain scheduler reads); then, for the
symbols that got new bars, ``after_new_bars`` refreshes the market notes in
the knowledge base and scores past answers whose horizon the new bars reached.
Follow-ups never undo a sync: a failed one is logged and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kitrade import observability
from kitrade.analysis.scoring import score_answers
from kitrade.data.sources import build_source
from kitrade.data.sync import sync_symbols
from kitrade.data.sync_state import list_sync_states

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.db import Database
    from kitrade.schemas import SyncReport, SyncState

__all__ = [
    "FollowUps",
    "NotesPublisher",
    "NotesSkipped",
    "SyncOutcome",
    "after_new_bars",
    "publish_notes",
    "publish_notes_if_running",
    "run_sync",
    "sync_status",
]

_log = logging.getLogger(__name__)

#: writes market notes for the symbols into the knowledge base; returns how many
NotesPublisher = Callable[["Settings", "Database", list[str]], int]


class NotesSkipped(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a notes publisher that had nowhere to publish; the message says why."""


@dataclass
class FollowUps:
    """What ran after a sync, per follow-up."""

    symbols: list[str] = field(default_factory=list)
    notes_published: int | None = None  # None: not run (no new bars, or skipped)
    notes_skipped: str | None = None  # why notes were not refreshed, when skipped
    scored: dict[str, int] = field(default_factory=dict)  # newly scored answers per symbol
    calibrated: dict[str, int] = field(default_factory=dict)  # outcomes taken into band calibration
    errors: list[str] = field(default_factory=list)


@dataclass
class SyncOutcome:
    """A sync's report and its follow-ups."""

    report: SyncReport
    follow_ups: FollowUps


def publish_notes(settings: Settings, db: Database, symbols: list[str] | None) -> int:
    """Write market notes (of ``symbols``, or all) through the connected cluster's KB actor."""
    from kitrade.analysis.actors import publish_notes as publish  # ray: only once notes are due

    return publish(settings, db, symbols)


def publish_notes_if_running(settings: Settings, db: Database, symbols: list[str]) -> int:
    """Write market notes when a platform is running; else ``NotesSkipped``.

    For callers outside the cluster (``kitrade sync``): starting a private Ray
    cluster and the embedding model only for notes would cost more than the
    sync, and ``kitrade up`` writes the notes of every symbol when it starts.
    """
    from kitrade.cluster import connect_platform  # ray: only once notes are due

    if not connect_platform(settings):
        raise NotesSkipped("no running platform; `kitrade up` writes them when it starts")
    return publish_notes(settings, db, symbols)


def after_new_bars(
    settings: Settings,
    db: Database,
    symbols: list[str],
    *,
    notes: NotesPublisher | None = publish_notes,
) -> FollowUps:
    """Refresh market notes, score past answers and update the band calibration of symbols
    that just got new bars.

    Args:
        settings: configuration.
        db: the store.
        symbols: symbols with new bars.
        notes: the notes publisher; None skips notes (the caller writes them itself).

    Returns:
        What ran; failures are in ``errors`` (and logged), never raised.
    """
    done = FollowUps(symbols=list(symbols))
    if not symbols:
        return done
    if notes is not None:
        try:
            done.notes_published = notes(settings, db, list(symbols))
        except NotesSkipped as skipped:
            done.notes_skipped = str(skipped)
        except Exception as exc:  # noqa: BLE001 - notes are a bonus; the sync itself succeeded
            _log.warning("market notes not refreshed: %s", exc)
            done.errors.append(f"market notes not refreshed: {exc}")
    for symbol in symbols:
        try:
            done.scored[symbol] = score_answers(db, symbol=symbol)
        except Exception as exc:  # noqa: BLE001 - scoring is retried after the next sync
            _log.warning("answers of %s not scored: %s", symbol, exc)
            done.errors.append(f"answers of {symbol} not scored: {exc}")
    _calibrate(db, symbols, done)
    return done


def _calibrate(db: Database, symbols: list[str], done: FollowUps) -> None:
    """Take the new bars' outcomes into each symbol's band calibration (``done.calibrated``)."""
    from kitrade.services.forecasting import advance_calibration

    models: dict[str, Any] = {}
    for symbol in symbols:
        try:
            done.calibrated[symbol] = advance_calibration(db, symbol=symbol, models=models)
        except Exception as exc:  # noqa: BLE001 - retried with the next bars; the sync succeeded
            _log.warning("band calibration of %s not updated: %s", symbol, exc)
            done.errors.append(f"band calibration of {symbol} not updated: {exc}")


def run_sync(
    settings: Settings,
    db: Database,
    *,
    symbols: Sequence[str] | None = None,
    source: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    notes: NotesPublisher | None = publish_notes,
) -> SyncOutcome:
    """Sync ``symbols`` (default: every active one) from a source, then run the follow-ups.

    Args:
        settings: configuration (picks the source when ``source`` is None).
        db: the store.
        symbols: names to sync, or None for all active symbols.
        source: ``sample``, ``files`` or ``http``; None for the configured one.
        progress: called with (symbol, rows) after each committed batch.
        notes: the notes publisher (see ``after_new_bars``).

    Returns:
        The sync report (failed symbols carry their error) and the follow-ups.
    """
    src = build_source(settings, source)
    try:
        report = sync_symbols(
            db, src, None if symbols is None else list(symbols), progress=progress
        )
    finally:
        src.close()
    fresh = [r.symbol for r in report.results if r.new_bars]
    follow_ups = after_new_bars(settings, db, fresh, notes=notes)
    observability.sync_lag(sync_status(db))
    return SyncOutcome(report=report, follow_ups=follow_ups)


def sync_status(db: Database) -> list[SyncState]:
    """Every symbol's sync state."""
    with db.connection() as conn:
        states = list_sync_states(conn)
    observability.sync_lag(states)
    return states
