"""``kitrade train``, ``progress``, ``models``, ``promote``, ``rollback``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from kitrade.cli import deps
from kitrade.cli.render import evaluation_lines, out, progress_table, versions_table
from kitrade.errors import InvalidInputError

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = [
    "models_cmd",
    "progress_cmd",
    "promote_cmd",
    "rollback_cmd",
    "train_cmd",
    "train_live",
]


def _snapshot(settings: Settings, run_id: str | None = None) -> dict[str, Any]:
    from kitrade.services import training  # psycopg: not needed for --help

    with deps.store(settings) as db:
        return training.progress(db, run_id=run_id).model_dump(mode="json")


def print_versions(settings: Settings, symbols: list[str] | None) -> None:
    """Print model versions (the newest 20 per symbol, or the newest 500) with their band
    quality."""
    from kitrade.services import quality  # psycopg: not needed for --help

    with deps.store(settings) as db:
        rows = (
            quality.versions(db, symbols=symbols, limit=20)
            if symbols
            else quality.versions(db, limit=500)
        )
    out.print(versions_table(rows))


def train_cmd(
    symbols: Annotated[
        list[str] | None, typer.Argument(help="Symbols (default: all active)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even fresh models")] = False,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Override NHITS max steps")] = None,
    scope: Annotated[
        str | None,
        typer.Option(
            help="symbol: one model per symbol; shared: one per timeframe on all its symbols; "
            "both: each symbol keeps the better (default: KITRADE_MODEL_SCOPE)"
        ),
    ] = None,
    targets: Annotated[
        str | None,
        typer.Option(
            help="What NHITS forecasts: level, log_return, or both as level,log_return (each "
            "trained and gated in turn: the better by the gate ends active; default: "
            "KITRADE_TRAIN_TARGET)"
        ),
    ] = None,
) -> None:
    """Train NHITS models on Ray with live progress; gate and register each version."""
    if scope is not None and scope not in ("symbol", "shared", "both"):
        raise InvalidInputError(f"--scope: expected symbol, shared or both, was {scope!r}")
    wanted: list[str | None] = [t.strip() for t in (targets or "").split(",") if t.strip()]
    wanted = wanted or [None]
    bad = [t for t in wanted if t not in (None, "level", "log_return")]
    if bad or len(set(wanted)) != len(wanted):
        raise InvalidInputError(
            f"--targets: expected level, log_return or level,log_return, was {targets!r}"
        )
    settings = deps.settings()
    from kitrade.cluster import connect  # ray: only when training
    from kitrade.services import training  # psycopg: not needed for --help

    training.prepare(settings)
    connect()
    failed = False
    for i, target in enumerate(wanted):
        if target is not None:
            out.print(f"target {target}:")
        report = train_live(
            settings,
            symbols or None,
            force=force or i > 0,  # the second target retrains what the first just trained
            max_steps=max_steps,
            scope=scope,
            target=target,
        )
        failed = failed or report.status != "done"
    if failed:
        raise typer.Exit(code=6)


def train_live(
    settings: Settings,
    symbols: list[str] | None,
    *,
    force: bool,
    max_steps: int | None,
    scope: str | None = None,
    target: str | None = None,
) -> Any:
    """Train with a live progress table, then print the versions; the run's report."""
    from kitrade.services import training  # psycopg: not needed for --help

    run_id = training.new_run_id()
    with Live(Table(), console=out, refresh_per_second=2, transient=False) as live:
        last = {"t": 0.0}

        def redraw() -> None:
            if time.monotonic() - last["t"] < 0.5:
                return
            last["t"] = time.monotonic()
            live.update(progress_table(_snapshot(settings, run_id)))

        report = training.train(
            settings,
            symbols,
            force=force,
            max_steps=max_steps,
            run_id=run_id,
            on_update=redraw,
            scope=scope,
            target=target,
        )
        last["t"] = 0.0
        redraw()
    print_versions(settings, [r.symbol for r in report.results])
    for r in report.results:
        if r.with_group:
            out.print(f"{r.symbol}: trained with its group {r.with_group} (a shared model sees")
            out.print("  all its series: when one member trains, the whole group does)")
    out.print(f"run {report.run_id}: {report.status} in {report.seconds:.0f}s")
    return report


def progress_cmd(
    run: Annotated[str | None, typer.Option(help="Run id (default: the latest)")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print once instead of following")] = False,
) -> None:
    """Show training progress (a live table until the run ends)."""
    settings = deps.settings()
    snap = _snapshot(settings, run)
    if snap.get("run_id") is None:
        out.print("no training run yet")
        return
    if once or snap.get("finished_at"):
        out.print(progress_table(snap))
        return
    with Live(progress_table(snap), console=out, refresh_per_second=2) as live:
        while not snap.get("finished_at"):
            time.sleep(1.0)
            snap = _snapshot(settings, snap["run_id"])
            live.update(progress_table(snap))


def models_cmd(
    symbol: Annotated[str | None, typer.Argument()] = None,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="One version's scores: NHITS raw and calibrated against each baseline on "
            "the same origins, the winner per score, and the calibration (needs SYMBOL)",
        ),
    ] = False,
    version: Annotated[
        str | None, typer.Option(help="With --compare: the version (default: the active one)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --compare: the JSON the API answers")
    ] = False,
) -> None:
    """List model versions with their metrics against the naive baselines and their band
    quality (calibrated coverage beside its target; `best`: a baseline that beats NHITS on
    every score); with --compare, one version's scores against every baseline."""
    if not compare and (version is not None or as_json):
        raise InvalidInputError("--version and --json: expected with --compare")
    settings = deps.settings()
    if symbol is not None:
        from kitrade.schemas import validate_symbol  # pydantic: not needed for --help

        validate_symbol(symbol)
    if not compare:
        print_versions(settings, [symbol] if symbol else None)
        return
    if symbol is None:
        raise InvalidInputError("--compare: expected a SYMBOL")
    from kitrade.services import quality  # psycopg: not needed for --help

    with deps.store(settings) as db:
        ev = quality.evaluation(db, symbol=symbol, version=version)
    if as_json:
        out.print_json(ev.model_dump_json())
    else:
        evaluation_lines(ev)


def promote_cmd(symbol: str, version: str) -> None:
    """Make VERSION the active model of SYMBOL (overrides the gate)."""
    from kitrade.services import training  # psycopg: not needed for --help

    with deps.store(deps.settings()) as db:
        v = training.promote(db, symbol=symbol, version=version)
    out.print(f"{symbol}: {v.version} is active")


def rollback_cmd(
    symbol: str,
    to: Annotated[
        str | None, typer.Option("--to", help="Version (default: the previous one)")
    ] = None,
) -> None:
    """Re-activate the previously active version of SYMBOL (or --to VERSION)."""
    from kitrade.services import training  # psycopg: not needed for --help

    with deps.store(deps.settings()) as db:
        v = training.rollback(db, symbol=symbol, to_version=to)
    out.print(f"{symbol}: rolled back to {v.version}")
