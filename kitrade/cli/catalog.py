"""``kitrade symbols`` and ``kitrade strategies``: list, add, remove."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kitrade.cli import deps
from kitrade.cli.render import out, strategies_table, symbols_table
from kitrade.errors import InvalidInputError
from kitrade.timeframes import TIMEFRAME_NAMES

__all__ = ["strategies_app", "symbols_app"]

symbols_app = typer.Typer(help="Symbols: list, add, remove.", no_args_is_help=True)
strategies_app = typer.Typer(help="Strategies: list, add, remove.", no_args_is_help=True)


@symbols_app.command("list")
def symbols_list() -> None:
    """List symbols with their bars and sync status."""
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    with deps.store(deps.settings()) as db:
        rows = catalog.symbols_with_sync(db)
    out.print(symbols_table(rows))


@symbols_app.command("add")
def symbols_add(
    symbol: str,
    timeframe: Annotated[str, typer.Option(help=" ".join(TIMEFRAME_NAMES))] = "H1",
    asset_class: Annotated[
        str, typer.Option(help="fx stock crypto index commodity other")
    ] = "other",
    description: str = "",
) -> None:
    """Add a symbol."""
    settings = deps.settings()
    from kitrade.schemas import SymbolIn  # pydantic models: not needed for --help
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    spec = deps.validated(
        SymbolIn,
        symbol=symbol,
        timeframe=timeframe,
        asset_class=asset_class,
        description=description,
        source="manual",
    )
    with deps.store(settings) as db:
        s = catalog.create_symbol(db, spec=spec)
    out.print(f"added {s.symbol} ({s.timeframe}, {s.asset_class})")


@symbols_app.command("rm")
def symbols_rm(
    symbol: str,
    delete_bars: Annotated[
        bool, typer.Option("--delete-bars", help="Also delete its bars.")
    ] = False,
) -> None:
    """Remove a symbol (refused while it has bars, unless --delete-bars)."""
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    with deps.store(deps.settings()) as db:
        n = catalog.delete_symbol(db, symbol=symbol, delete_bars=delete_bars)
    out.print(f"removed {symbol}" + (f" and its {n} bars" if n else ""))


@strategies_app.command("list")
def strategies_list() -> None:
    """List strategies."""
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    with deps.store(deps.settings()) as db:
        rows = catalog.list_strategies(db)
    out.print(strategies_table(rows))


@strategies_app.command("add")
def strategies_add(
    spec_file: Annotated[Path, typer.Argument(help="JSON strategy spec file")],
    kind: Annotated[
        str | None,
        typer.Option(
            help="forecast_threshold forecast_interval buy_and_hold sma_cross naive_direction, "
            "or parameters (parameter-only; the default); overrides the file's kind"
        ),
    ] = None,
) -> None:
    """Add a strategy from a JSON spec (name, symbols, timeframe, kind, parameters); the
    parameters of a backtest kind are checked against it."""
    settings = deps.settings()
    from kitrade.schemas import StrategySpec  # pydantic models: not needed for --help
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    try:
        payload = json.loads(spec_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{spec_file}: expected a JSON strategy spec, {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInputError(
            f"{spec_file}: expected a JSON object, was {type(payload).__name__}"
        )
    if kind is not None:
        payload["kind"] = kind
    spec = deps.validated(StrategySpec, **payload)
    with deps.store(settings) as db:
        s = catalog.create_strategy(db, spec=spec)
    out.print(f"added strategy {s.name} ({s.kind}) on {', '.join(s.symbols)}")


@strategies_app.command("rm")
def strategies_rm(name: str) -> None:
    """Remove a strategy."""
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    with deps.store(deps.settings()) as db:
        catalog.delete_strategy(db, name=name)
    out.print(f"removed strategy {name}")
