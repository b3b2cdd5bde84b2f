"""The ``kitrade`` command line: one module per command group over ``kitrade.services``.

Heavy libraries (pandas, psycopg, ray, torch, chromadb) are imported inside
commands so ``kitrade --help`` stays fast. kitrade errors become a one-line
message on stderr and the error class's exit code (see ``kitrade.errors``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
import typer

from kitrade.cli import analyze, backtest, catalog, db, knowledge, lifecycle, ops, sync, training
from kitrade.cli.render import err
from kitrade.errors import KitradeError

__all__ = ["app", "main"]


def _build_app() -> typer.Typer:
    """The command tree: groups as sub-apps, the rest as top-level commands."""
    root = typer.Typer(
        name="kitrade",
        help="kitrade: market bars, NHITS forecasters and grounded trading analysis on Ray.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    root.add_typer(db.app, name="db")
    root.add_typer(catalog.symbols_app, name="symbols")
    root.add_typer(catalog.strategies_app, name="strategies")
    root.add_typer(knowledge.app, name="kb")
    commands: list[tuple[str, Callable[..., None]]] = [
        ("sync", sync.sync_cmd),
        ("bars", sync.bars_cmd),
        ("train", training.train_cmd),
        ("progress", training.progress_cmd),
        ("models", training.models_cmd),
        ("promote", training.promote_cmd),
        ("rollback", training.rollback_cmd),
        ("analyze", analyze.analyze_cmd),
        ("backtest", backtest.backtest_cmd),
        ("backtests", backtest.backtests_cmd),
        ("backtest-show", backtest.backtest_show_cmd),
        ("backup", ops.backup_cmd),
        ("restore", ops.restore_cmd),
        ("status", ops.status_cmd),
        ("up", lifecycle.up_cmd),
        ("down", lifecycle.down_cmd),
    ]
    for name, fn in commands:
        root.command(name)(fn)
    return root


app = _build_app()


def _run(fn: Callable[[], object]) -> int:
    try:
        rv = fn()
    except KitradeError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Console entry point."""
    sys.exit(_run(lambda: app(standalone_mode=False)))
