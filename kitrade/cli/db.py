"""``kitrade db``: start, stop and inspect the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from kitrade.cli import deps
from kitrade.cli.render import out, store_table

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["app", "print_store_status"]

app = typer.Typer(
    help="The database (embedded PostgreSQL unless TIMESCALE_HOST is set).", no_args_is_help=True
)


@app.command("up")
def db_up() -> None:
    """Start the embedded database (if configured) and apply migrations."""
    settings = deps.settings()
    from kitrade.data.db import start_database  # psycopg: not needed for --help

    started = start_database(settings)
    deps.store(settings).close()
    if settings.embedded_db:
        state = "started" if started else "already running"
        out.print(
            f"embedded PostgreSQL {state} on 127.0.0.1:{settings.embedded_pg_port} "
            f"(data in {settings.pg_dir})"
        )
    else:
        out.print(f"using PostgreSQL at {settings.timescale_host}:{settings.timescale_port}")


@app.command("down")
def db_down() -> None:
    """Stop the embedded database (an external one is never touched)."""
    settings = deps.settings()
    from kitrade.data.db import stop_database  # psycopg: not needed for --help

    if not settings.embedded_db:
        out.print("TIMESCALE_HOST is set: the database is external, nothing to stop")
        return
    out.print(
        "embedded PostgreSQL stopped"
        if stop_database(settings)
        else "embedded PostgreSQL was not running"
    )


@app.command("status")
def db_status() -> None:
    """Show where the database is and whether it answers."""
    print_store_status(deps.settings())


def print_store_status(settings: Settings) -> bool:
    """Print the database's state; whether it answers."""
    from kitrade.data.store import store_status  # psycopg: not needed for --help

    st = store_status(settings)
    out.print(store_table(st))
    return st.running
