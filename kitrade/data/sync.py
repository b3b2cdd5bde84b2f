"""Incremental sync of symbols from a market-data source into the store.

Per symbol: resume after the last *stored* bar (the bars table is the truth,
so a sync killed mid-way resumes exactly where its last committed batch
ended), stream the source's frames through ``ingest_bars`` with sync state
advanced inside each batch's transaction, and on success write one
``bars_ingested`` event covering everything ingested since the last event
(including what a killed run had committed). One symbol's failure is recorded
in its state and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from kitrade.data import sync_state
from kitrade.data.bars import ingest_bars
from kitrade.data.db import one_row
from kitrade.data.events import BARS_INGESTED, record_event
from kitrade.data.symbols import ensure_symbol, list_symbols
from kitrade.errors import KitradeError
from kitrade.schemas import SyncReport, SyncSymbolResult, validate_symbol

if TYPE_CHECKING:
    from kitrade.data.db import Database
    from kitrade.data.sources.base import MarketDataSource

__all__ = ["register_source_symbols", "sync_symbols"]

_log = logging.getLogger(__name__)
#: progress callback: (symbol, rows ingested so far for it)
Progress = Callable[[str, int], None]


def register_source_symbols(db: Database, source: MarketDataSource) -> list[str]:
    """Create the symbols the source offers that are not stored yet; returns the new ones."""
    added = []
    with db.connection() as conn:
        for spec in source.list_symbols():
            if ensure_symbol(conn, spec=spec):
                added.append(spec.symbol)
    return added


def _sync_one(
    db: Database, source: MarketDataSource, symbol: str, progress: Progress | None
) -> SyncSymbolResult:
    with db.connection() as conn:
        row = conn.execute("SELECT max(ts) FROM bars WHERE symbol = %s", (symbol,)).fetchone()
        since = row[0] if row else None
        sync_state.mark_running(conn, symbol=symbol, source=source.name)
        conn.execute(
            "UPDATE sync_state SET unreported_from = coalesce(unreported_from, %s)"
            " WHERE symbol = %s",
            (since or datetime(1, 1, 1, tzinfo=UTC), symbol),
        )
        conn.commit()

        def on_batch(c: object, batch: object) -> None:
            sync_state.advance(conn, symbol=symbol, last_bar=batch.last_ts, rows=batch.rows)  # type: ignore[attr-defined]
            if progress is not None:
                progress(symbol, batch.rows)  # type: ignore[attr-defined]

        result = ingest_bars(
            conn,
            symbol=symbol,
            bars=source.fetch(symbol, since=since),
            validated=True,
            on_batch=on_batch,
        )
        with conn.transaction():
            new = conn.execute(
                "SELECT count(*), min(b.ts), max(b.ts) FROM bars b JOIN sync_state s USING (symbol)"
                " WHERE b.symbol = %s AND b.ts > s.unreported_from",
                (symbol,),
            ).fetchone()
            count, first_ts, last_ts = one_row(new, "new bars")
            count = int(count)
            if count:
                record_event(
                    conn,
                    kind=BARS_INGESTED,
                    symbol=symbol,
                    payload={
                        "count": count,
                        "first_ts": first_ts.isoformat(),
                        "last_ts": last_ts.isoformat(),
                        "source": source.name,
                    },
                )
            conn.execute(
                "UPDATE sync_state SET unreported_from = NULL WHERE symbol = %s", (symbol,)
            )
            status: Literal["ok", "up_to_date"] = "ok" if count else "up_to_date"
            sync_state.mark_finished(conn, symbol=symbol, status=status)
    return SyncSymbolResult(
        symbol=symbol,
        status=status,
        rows=result.rows,
        new_bars=count,
        first_ts=first_ts,
        last_ts=last_ts,
    )


def sync_symbols(
    db: Database,
    source: MarketDataSource,
    symbols: Sequence[str] | None = None,
    *,
    register: bool = True,
    progress: Progress | None = None,
) -> SyncReport:
    """Sync ``symbols`` (default: every active stored symbol) from ``source``.

    Args:
        db: the store.
        source: where bars come from.
        symbols: names to sync; unknown ones are created from the source's list.
        register: first create the source's symbols that are not stored yet.
        progress: called after each committed batch.

    Returns:
        A report with one result per symbol; failures carry their error message.
    """
    started = datetime.now(UTC)
    if register:
        register_source_symbols(db, source)
    if symbols is None:
        with db.connection() as conn:
            names = [s.symbol for s in list_symbols(conn, active_only=True)]
    else:
        names = [validate_symbol(s) for s in symbols]
    results = []
    for symbol in names:
        try:
            results.append(_sync_one(db, source, symbol, progress))
        except KitradeError as exc:
            _log.warning("sync of %s failed: %s", symbol, exc.message)
            results.append(SyncSymbolResult(symbol=symbol, status="failed", error=exc.message))
            _record_failure(db, symbol, source.name, exc.message)
    return SyncReport(
        source=source.name, started_at=started, finished_at=datetime.now(UTC), results=results
    )


def _record_failure(db: Database, symbol: str, source: str, message: str) -> None:
    try:
        with db.connection() as conn:
            if sync_state.get_sync_state(conn, symbol=symbol) is None:
                sync_state.mark_running(conn, symbol=symbol, source=source)
            sync_state.mark_finished(conn, symbol=symbol, status="failed", error=message[:2000])
    except KitradeError as exc:  # the database itself is gone; the report still says it
        _log.error("could not record sync failure of %s: %s", symbol, exc.message)
