"""``kitrade up`` and ``kitrade down``: the whole platform on one machine.

What ``up`` starts is recorded in the data dir (``kitrade.cluster.PlatformRecord``):
a second ``up`` finds the platform there and leaves it alone, a failed start stops
only what that start created, and ``down`` stops only the recorded cluster.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from kitrade.cli import deps
from kitrade.cli.db import print_store_status
from kitrade.cli.render import err, out
from kitrade.cli.sync import run_sync_live
from kitrade.cli.training import train_live

if TYPE_CHECKING:
    from kitrade.cluster import PlatformRecord
    from kitrade.config import Settings

__all__ = ["down_cmd", "up_cmd"]


@dataclass
class _Started:
    """What this ``up`` has started so far: exactly what a failed start stops."""

    pg: bool = False
    process_session: int | None = None  # of the Ray cluster it spawned
    record: PlatformRecord | None = None  # written to the data dir once Ray is up
    serve: bool = False

    def spawned(self, process_session: int) -> None:
        self.process_session = process_session


def up_cmd(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start and return")] = False,
    train: Annotated[bool, typer.Option(help="Train symbols that have no fresh model")] = True,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Cap NHITS steps")] = None,
) -> None:
    """Start the platform: database, sample data, Ray, missing models, the HTTP API."""
    settings = deps.settings()
    if not os.environ.get("RAY_ADDRESS") and _already_running(settings):
        return
    started = _Started()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    try:
        _up(settings, train=train, max_steps=max_steps, started=started)
        if detach:
            out.print("running in the background; stop with `kitrade down`")
            return
        out.print("kitrade is up. Press Ctrl-C to stop.")
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except BaseException:
        err.print("start-up failed: stopping what this start created")
        _shutdown(settings, started)
        raise
    out.print("shutting down…")
    _shutdown(settings, started)
    out.print("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _already_running(settings: Settings) -> bool:
    """True (and say so) when this data dir's platform runs; refuse a start that would clash.

    A record whose cluster is gone is cleared; one whose processes live but do not answer
    is left to ``kitrade down``. Then every fixed port must be free, before anything starts.
    """
    from kitrade import platform  # psutil: not needed for --help
    from kitrade.cluster import PLATFORM_FILE, clear_platform, platform_record, running_platform
    from kitrade.errors import ConflictError

    running = running_platform(settings)
    if running is not None:
        out.print(f"kitrade is already running (data dir {settings.data_dir}); left as it is")
        _print_urls(settings, running)
        return True
    stale = platform_record(settings.data_dir)
    if stale is not None:
        if platform.cluster_processes(stale.process_session, stale.session_dir):
            raise ConflictError(
                f"the Ray cluster recorded in {settings.data_dir / PLATFORM_FILE} (session "
                f"{stale.session_name}) has live processes but does not answer on "
                f"{stale.dashboard_url}; stop it with `kitrade down`, then start again"
            )
        clear_platform(settings.data_dir)
    platform.check_ports_free(settings)
    return False


def _load_if_empty(settings: Settings) -> None:
    """Sync the configured source into an empty store (notes are written once Ray is up)."""
    from kitrade.services import catalog  # pandas/psycopg: not needed for --help

    with deps.store(settings) as db:
        if not catalog.has_bars(db):
            out.print(
                f"store is empty: loading market data from the {settings.resolved_source} source"
            )
            run_sync_live(settings, db, None, None, notes=None)


def _start_cluster(settings: Settings, started: _Started) -> None:
    """Start kitrade's own Ray cluster (or join ``RAY_ADDRESS``), record it and connect."""
    from kitrade import platform  # psutil: not needed for --help
    from kitrade.cluster import connect, connect_record, write_platform

    out.print("starting Ray…")
    record = platform.start_ray(settings, on_spawn=started.spawned)
    if record is None:  # RAY_ADDRESS: join that cluster, record nothing of ours
        connect()
        return
    started.record = record.model_copy(update={"pg_started": started.pg})
    write_platform(settings.data_dir, started.record)
    connect_record(started.record)


def _up(settings: Settings, *, train: bool, max_steps: int | None, started: _Started) -> None:
    from kitrade import platform  # psycopg: not needed for --help
    from kitrade.data.db import start_database  # psycopg: not needed for --help
    from kitrade.services import training  # psycopg: not needed for --help

    started.pg = start_database(settings)
    _load_if_empty(settings)
    print_store_status(settings)
    _start_cluster(settings, started)
    if train:
        train_live(settings, None, force=False, max_steps=max_steps)
    out.print("deploying the HTTP API…")
    started.serve = True  # set first: a deploy interrupted half-way is shut down too
    platform.deploy(settings)
    training.start_retrain_scheduler(settings)
    _publish_notes(settings)
    _print_urls(settings, started.record)
    if settings.api_key is None:
        out.print("[yellow]KITRADE_API_KEY is unset: state-changing routes answer 403[/]")


def _print_urls(settings: Settings, record: PlatformRecord | None) -> None:
    base = record.serve_url if record is not None else f"http://{settings.host}:{settings.port}"
    out.print(f"API        {base}/api/v1/symbols")
    out.print(f"docs       {base}/docs")
    out.print(f"dashboard  {base}/")
    out.print(f"health     {base}/health")
    if record is not None:
        out.print(f"Ray        {record.dashboard_url}")


def _publish_notes(settings: Settings) -> None:
    """Market notes of every symbol into the knowledge base (a bonus: failures only warn)."""
    from kitrade.data.db import Database  # psycopg: not needed for --help
    from kitrade.services.sync import publish_notes  # pandas: not needed for --help

    try:
        with Database.from_settings(settings) as db:
            publish_notes(settings, db, None)
    except Exception as exc:  # noqa: BLE001 - notes are a bonus; the platform is up without them
        err.print(f"market notes not written: {exc}")


def _shutdown(settings: Settings, started: _Started) -> None:
    """Stop what this ``up`` started, and nothing else."""
    from kitrade import platform  # psycopg: not needed for --help
    from kitrade.cluster import clear_platform
    from kitrade.data.db import stop_database  # psycopg: not needed for --help

    if started.serve:
        try:
            platform.undeploy()
        except Exception as exc:  # noqa: BLE001 - Serve may already be gone; go on stopping
            err.print(f"serve shutdown: {exc}")
    if started.process_session is not None:
        session_dir = started.record.session_dir if started.record is not None else None
        platform.stop_ray(started.process_session, session_dir)
    if started.record is not None:
        clear_platform(settings.data_dir)
    if started.pg:
        stop_database(settings)


def down_cmd(
    all_ray: Annotated[
        bool,
        typer.Option(
            "--all-ray", help="Also stop every other Ray process of this user (`ray stop`)"
        ),
    ] = False,
) -> None:
    """Stop what `kitrade up --detach` started: its Ray cluster (only it), the database."""
    settings = deps.settings()
    from kitrade.data.db import stop_database  # psycopg: not needed for --help

    process_session = _stop_own_cluster(settings)
    _other_clusters(process_session, all_ray=all_ray)
    out.print(
        "embedded PostgreSQL stopped" if stop_database(settings) else "database: nothing to stop"
    )


def _stop_own_cluster(settings: Settings) -> int | None:
    """Stop the data dir's recorded cluster; its process session (None: none recorded)."""
    from kitrade import platform  # psutil: not needed for --help
    from kitrade.cluster import clear_platform, platform_record

    if os.environ.get("RAY_ADDRESS"):
        out.print("RAY_ADDRESS is set: that cluster is not kitrade's to stop; left running")
        return None
    record = platform_record(settings.data_dir)
    if record is None:
        out.print(f"Ray: no cluster recorded in {settings.data_dir}; nothing of kitrade's to stop")
        return None
    stopped = platform.stop_ray(record.process_session, record.session_dir)
    clear_platform(settings.data_dir)
    out.print(
        f"Ray stopped (session {record.session_name}, {stopped} processes)"
        if stopped
        else f"Ray: the recorded cluster (session {record.session_name}) was not running"
    )
    return record.process_session


def _other_clusters(process_session: int | None, *, all_ray: bool) -> None:
    """Say which other Ray clusters run and are left alone; stop them all with ``all_ray``."""
    from kitrade import platform  # psutil: not needed for --help

    if all_ray:
        platform.stop_all_ray()
        out.print("--all-ray: every other Ray process of this user stopped (`ray stop`)")
        return
    others = platform.other_clusters(process_session)
    if not others:
        return
    out.print(f"left running: {len(others)} other Ray cluster(s) kitrade did not start")
    for c in others:
        port = c.gcs_port if c.gcs_port is not None else "?"
        out.print(f"  GCS port {port}  pid {c.gcs_pid}  session {c.session_dir or '?'}")
    out.print("  (`kitrade down --all-ray` stops them too)")
