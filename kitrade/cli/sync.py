"""``kitrade sync`` and ``kitrade bars``: fetch new bars, print stored ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from kitrade.cli import deps
from kitrade.cli.render import bars_table, err, out, sync_table
from kitrade.timeframes import TIMEFRAME_NAMES

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.db import Database
    from kitrade.services.sync import NotesPublisher, SyncOutcome

__all__ = ["bars_cmd", "run_sync_live", "sync_cmd"]


def sync_cmd(
    symbols: Annotated[
        list[str] | None, typer.Argument(help="Symbols (default: all active)")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="sample, files or http (default: configured)")
    ] = None,
) -> None:
    """Fetch new bars for symbols from the market-data source, then refresh notes and scores."""
    from kitrade.services.sync import publish_notes_if_running  # pandas/psycopg: not for --help

    settings = deps.settings()
    with deps.store(settings) as db:
        outcome = run_sync_live(
            settings, db, symbols or None, source, notes=publish_notes_if_running
        )
    if not outcome.report.ok:
        raise typer.Exit(code=5)


def run_sync_live(
    settings: Settings,
    db: Database,
    symbols: list[str] | None,
    source: str | None,
    *,
    notes: NotesPublisher | None,
) -> SyncOutcome:
    """Sync with a spinner on stderr, then print the report and the follow-ups."""
    from kitrade.services.sync import run_sync  # pandas/psycopg: not needed for --help

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} bars"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("syncing", total=None)

        def progress(symbol: str, rows: int) -> None:
            bar.update(task, advance=rows, description=f"syncing {symbol}")

        outcome = run_sync(
            settings, db, symbols=symbols, source=source, progress=progress, notes=notes
        )
    out.print(sync_table(outcome.report))
    done = outcome.follow_ups
    if done.symbols:
        scored = sum(done.scored.values())
        notes_text = (
            f"skipped ({done.notes_skipped})"
            if done.notes_skipped
            else "-"
            if done.notes_published is None
            else str(done.notes_published)
        )
        calibrated = sum(done.calibrated.values())
        out.print(
            f"follow-ups: answers scored {scored}, market notes {notes_text}, "
            f"band calibration {calibrated} outcomes taken in"
        )
    for problem in done.errors:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)
    return outcome


def bars_cmd(
    symbol: str,
    last: Annotated[
        int, typer.Option("--last", "-n", min=1, max=100_000, help="How many bars")
    ] = 10,
    timeframe: Annotated[
        str | None,
        typer.Option(help=f"Resample to a coarser timeframe: {' '.join(TIMEFRAME_NAMES)}"),
    ] = None,
) -> None:
    """Print a symbol's latest bars."""
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    with deps.store(deps.settings()) as db:
        frame = catalog.bars(db, symbol=symbol, last=last, timeframe=timeframe)
    out.print(bars_table(symbol, frame))
