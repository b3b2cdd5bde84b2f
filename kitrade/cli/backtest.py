"""``kitrade backtest``, ``backtests``, ``backtest-show``: walk-forward backtests from the shell."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kitrade.cli import deps
from kitrade.cli.render import (
    backtest_metrics_table,
    backtests_table,
    forecast_quality_table,
    lag_test_table,
    lookahead_table,
    out,
)
from kitrade.errors import InvalidInputError

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.backtests import BacktestRecord

__all__ = ["backtest_cmd", "backtest_show_cmd", "backtests_cmd", "print_result"]


def _pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    """``["k=v", ...]`` as a dict; each value read as JSON when it parses (``3``, ``true``)."""
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"{option}: expected KEY=VALUE, was {item!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO date or timestamp as UTC (a naive one is read as UTC)."""
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"{option}: expected an ISO date such as 2024-01-31 or 2024-01-31T08:00, was {value!r}"
        ) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def _costs(**given: float | None) -> dict[str, float] | None:
    """The costs object of the options given (the engine's defaults fill the rest)."""
    costs = {k: v for k, v in given.items() if v is not None}
    return costs or None


def _spec(strategy: str | None, kind: str | None, params: list[str] | None) -> dict[str, Any]:
    """``create_backtest``'s ``strategy=`` or ``spec=`` argument from the command line."""
    if (strategy is None) == (kind is None):
        raise InvalidInputError("expected a stored STRATEGY name or --kind KIND, not both")
    if strategy is not None:
        if params:
            raise InvalidInputError("--param: only with --kind (a stored strategy has its own)")
        return {"strategy": strategy}
    return {"spec": {"kind": kind, "params": _pairs(params, "--param")}}


def backtest_cmd(  # long: one typer option per backtest setting
    strategy: Annotated[
        str | None, typer.Argument(help="A stored strategy's name (or use --kind)")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="Inline strategy kind: forecast_threshold, forecast_interval, ..."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Inline strategy parameter KEY=VALUE")
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: the strategy's)")
    ] = None,
    timeframe: Annotated[
        str | None, typer.Option(help="Bars' timeframe (default: the strategy's)")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="First decision bar (ISO date, UTC)")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last decision bar (ISO date, UTC)")
    ] = None,
    folds: Annotated[int, typer.Option(help="Walk-forward folds per symbol")] = 4,
    commission: Annotated[
        float | None, typer.Option(help="Commission, fraction of notional (default 0.0005)")
    ] = None,
    spread: Annotated[
        float | None, typer.Option(help="Full bid-ask spread, fraction (default 0.0002)")
    ] = None,
    slippage: Annotated[
        float | None, typer.Option(help="Slippage per fill, fraction (default 0.0001)")
    ] = None,
    fixed: Annotated[float | None, typer.Option(help="Fixed fee per fill (default 0)")] = None,
    max_gross: Annotated[
        float | None, typer.Option(help="Largest sum of |weights| (default 1)")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override NHITS max steps")] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="NHITS override KEY=VALUE (fold models)")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here")] = None,
) -> None:
    """Record a walk-forward backtest, run it on Ray with a progress bar, print its metrics."""
    overrides = _pairs(model, "--model") | ({"max_steps": max_steps} if max_steps else {})
    fields = _spec(strategy, kind, param) | {
        "symbols": [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None,
        "timeframe": timeframe,
        "start": _when(start, "--from"),
        "end": _when(end, "--to"),
        "n_folds": folds,
        "costs": _costs(
            commission=commission,
            spread=spread,
            slippage=slippage,
            fixed=fixed,
            max_gross=max_gross,
        ),
        "model_overrides": overrides or None,
    }
    settings = deps.settings()
    from kitrade.services import backtests  # pandas/psycopg: not needed for --help

    with deps.store(settings) as db:
        record = backtests.create_backtest(db, **fields)
        out.print(f"backtest {record.id} recorded: {', '.join(record.symbols)} {record.timeframe}")
        done = _run_with_progress(settings, db, record.id)
        print_result(done)
        if report is not None:
            path = backtests.write_report(settings, db, backtest_id=done.id, path=report)
            out.print(f"report: {path}")


def _run_with_progress(settings: Settings, db: Any, backtest_id: int) -> BacktestRecord:
    """Run the backtest with a rich progress bar; its final record (or its error raised).

    ``run_backtest`` joins the cluster of ``RAY_ADDRESS`` (the running platform's) or
    starts a local one, and only when folds need computing.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from kitrade.services import backtests  # pandas/psycopg: not needed for --help

    columns = (
        TextColumn("[bold]backtest {task.fields[id]}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f} %"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task("starting", total=1.0, id=backtest_id)

        def show(fraction: float, message: str) -> None:
            bar.update(task, completed=fraction, description=message[:70])

        return backtests.run_backtest(settings, db, backtest_id, progress=show)


def print_result(record: BacktestRecord) -> None:
    """The record's summary line, then metrics, forecast quality, lag test and look-ahead checks."""
    took = (
        f" in {(record.finished_at - record.started_at).total_seconds():.1f} s"
        if record.finished_at and record.started_at
        else ""
    )
    name = record.strategy_name or f"inline {record.spec.get('kind')}"
    out.print(
        f"backtest {record.id}: {name} on {', '.join(record.symbols)} {record.timeframe}, "
        f"{record.n_folds} folds per symbol: [bold]{record.status}[/]{took}",
        highlight=False,
    )
    if record.error:
        out.print(f"[red]error:[/] {record.error}", highlight=False)
    result = record.result
    if not result:
        return
    folds = result.get("folds") or []
    if folds:
        first, last = min(f["start"] for f in folds), max(f["end"] for f in folds)
        reuse = result.get("forecast_folds") or {}
        out.print(
            f"decision bars {first} .. {last}; forecast folds computed "
            f"{reuse.get('computed', '-')}, reused {reuse.get('reused', '-')}",
            highlight=False,
        )
    out.print(backtest_metrics_table(result.get("metrics") or {}))
    if result.get("quality"):
        out.print(forecast_quality_table(result["quality"]))
    if result.get("lag_test"):
        out.print(lag_test_table(result["lag_test"]))
    out.print(lookahead_table(result.get("lookahead_checks") or []))
    costs = result.get("costs") or {}
    out.print(f"costs: {json.dumps(costs, sort_keys=True)}", highlight=False)


def backtests_cmd(
    status: Annotated[
        str | None, typer.Option(help="Only this status: queued running done failed")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first")] = 50,
) -> None:
    """List backtests, newest first, with their return beside buy-and-hold."""
    from kitrade.services import backtests  # pandas/psycopg: not needed for --help

    with deps.store(deps.settings()) as db:
        rows = backtests.list_backtests(db, status=status, limit=limit)
    if not rows:
        out.print("no backtests yet")
        return
    out.print(backtests_table(rows))


def backtest_show_cmd(
    backtest_id: Annotated[int, typer.Argument(metavar="ID", help="The backtest's id")],
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the stored record as JSON instead")
    ] = False,
) -> None:
    """Show one backtest: its metrics, forecast quality, lag test and look-ahead checks."""
    settings = deps.settings()
    from kitrade.services import backtests  # pandas/psycopg: not needed for --help

    with deps.store(settings) as db:
        record = backtests.get_backtest(db, backtest_id=backtest_id)
        if as_json:
            out.print_json(record.model_dump_json())
        else:
            print_result(record)
        if report is not None:
            path = backtests.write_report(settings, db, backtest_id=backtest_id, path=report)
            out.print(f"report: {path}")
