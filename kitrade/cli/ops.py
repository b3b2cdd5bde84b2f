"""``kitrade backup``, ``restore`` and ``status``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kitrade.cli import deps
from kitrade.cli.db import print_store_status
from kitrade.cli.render import err, out

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["backup_cmd", "print_platform_status", "restore_cmd", "status_cmd"]


def backup_cmd(file: Annotated[Path, typer.Argument(help="Archive to write (.tar.gz)")]) -> None:
    """Write one archive with a database dump, the models dir and the RAG dir."""
    settings = deps.settings()

    deps.store(settings).close()
    from kitrade.backup import backup  # psycopg stays out of `kitrade --help`

    manifest = backup(settings, file)
    out.print(
        f"backup written to {file} ({file.stat().st_size / 1e6:.1f} MB, {manifest['created_at']})"
    )


def restore_cmd(
    file: Annotated[Path, typer.Argument(help="Archive from `kitrade backup`")],
) -> None:
    """Restore an archive into a fresh data dir / empty database."""
    settings = deps.settings()

    from kitrade.backup import restore  # psycopg stays out of `kitrade --help`

    manifest = restore(settings, file)
    out.print(f"restored backup of {manifest['created_at']} into {settings.data_dir}")


def status_cmd() -> None:
    """Show the platform's configuration and the database's state."""
    settings = deps.settings()
    out.print(f"data dir      {settings.data_dir}")
    out.print(f"source        {settings.resolved_source}")
    out.print(f"HTTP          {settings.host}:{settings.port}")
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        err.print(
            f"[yellow]warning:[/] the API listens on {settings.host} beyond localhost and "
            "KITRADE_API_KEY is unset"
        )
    print_platform_status(settings)
    if not print_store_status(settings):
        raise typer.Exit(code=69)


def print_platform_status(settings: Settings) -> None:
    """Whether this data dir's platform runs, from its record and the token-authenticated
    probe (``kitrade.cluster``), never from ``ray status``."""
    from kitrade.cluster import platform_record, running_platform  # httpx: not for --help

    running = running_platform(settings)
    if running is not None:
        out.print(
            f"platform      running: API {running.serve_url}, Ray {running.dashboard_url} "
            f"(session {running.session_name})"
        )
    elif platform_record(settings.data_dir) is not None:
        out.print("platform      recorded but its Ray cluster does not answer; `kitrade down`")
    else:
        out.print("platform      not running (`kitrade up` starts it)")
