"""``kitrade up`` and ``kitrade down``: the whole platform on one machine."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kitrade.cli import deps
from kitrade.cli.db import print_store_status
from kitrade.cli.render import err, out
from kitrade.cli.sync import run_sync_live
from kitrade.cli.training import train_live

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["down_cmd", "up_cmd"]


def up_cmd(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start and return")] = False,
    train: Annotated[bool, typer.Option(help="Train symbols that have no fresh model")] = True,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Cap NHITS steps")] = None,
) -> None:
    """Start the platform: database, sample data, Ray, missing models, the HTTP API."""
    settings = deps.settings()
    state = {"ray": False}
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    try:
        _up(settings, train=train, max_steps=max_steps, state=state)
        if detach:
            out.print("running in the background; stop with `kitrade down`")
            return
        out.print("kitrade is up. Press Ctrl-C to stop.")
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except BaseException:
        err.print("start-up failed: stopping what was started")
        _shutdown(settings, stop_cluster=state["ray"])
        raise
    out.print("shutting down…")
    _shutdown(settings, stop_cluster=state["ray"])
    out.print("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _load_if_empty(settings: Settings) -> None:
    """Sync the configured source into an empty store (notes are written once Ray is up)."""
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    with deps.store(settings) as db:
        if not catalog.has_bars(db):
            out.print(
                f"store is empty: loading market data from the {settings.resolved_source} source"
            )
            run_sync_live(settings, db, None, None, notes=None)


def _up(settings: Settings, *, train: bool, max_steps: int | None, state: dict[str, Any]) -> None:
    from kitrade import platform  # psycopg: not needed for --help
    from kitrade.cluster import connect  # ray: only when the platform starts
    from kitrade.services import training  # psycopg: not needed for --help

    _load_if_empty(settings)
    print_store_status(settings)
    out.print("starting Ray…")
    state["ray"] = platform.start_ray(settings, state=state)
    connect(address="auto" if not os.environ.get("RAY_ADDRESS") else None)
    if train:
        train_live(settings, None, force=False, max_steps=max_steps)
    out.print("deploying the HTTP API…")
    platform.deploy(settings)
    training.start_retrain_scheduler(settings)
    _publish_notes(settings)
    base = f"http://{settings.host}:{settings.port}"
    out.print(f"API        {base}/api/v1/symbols")
    out.print(f"docs       {base}/docs")
    out.print(f"dashboard  {base}/")
    out.print(f"health     {base}/health")
    out.print(f"Ray        http://127.0.0.1:{platform.DASHBOARD_PORT}")
    if settings.api_key is None:
        out.print("[yellow]KITRADE_API_KEY is unset: state-changing routes answer 403[/]")


def _publish_notes(settings: Settings) -> None:
    """Market notes of every symbol into the knowledge base (a bonus: failures only warn)."""
    from kitrade.data.db import Database  # psycopg: not needed for --help
    from kitrade.services.sync import publish_notes  # pandas: not needed for --help

    try:
        with Database.from_settings(settings) as db:
            publish_notes(settings, db, None)
    except Exception as exc:  # noqa: BLE001 - notes are a bonus; the platform is up without them
        err.print(f"market notes not written: {exc}")


def _shutdown(settings: Settings, *, stop_cluster: bool) -> None:
    from kitrade import platform  # psycopg: not needed for --help
    from kitrade.data.db import stop_database  # psycopg: not needed for --help

    try:
        platform.undeploy()
    except Exception as exc:  # noqa: BLE001 - Serve may already be gone; go on stopping
        err.print(f"serve shutdown: {exc}")
    if stop_cluster:
        platform.stop_ray()
    stop_database(settings)


def down_cmd() -> None:
    """Stop what `kitrade up --detach` started: Serve, the local Ray cluster, the database."""
    settings = deps.settings()
    from kitrade import platform  # psycopg: not needed for --help
    from kitrade.data.db import stop_database  # psycopg: not needed for --help

    if not os.environ.get("RAY_ADDRESS"):
        platform.stop_ray()
        out.print("Ray stopped")
    out.print(
        "embedded PostgreSQL stopped" if stop_database(settings) else "database: nothing to stop"
    )
