"""The benchmarks' common set-up: a throw-away embedded PostgreSQL, Settings for it, sample bars.

``temp_postgres(prefix)`` starts an embedded PostgreSQL in a temporary
directory and stops it (and removes the directory) on exit.
``bench_store(prefix, ...)`` adds ``Settings`` pointing at it (database
``bench``, data directory the temporary one, no ``.env`` read), an open,
migrated store and, by default, the bundled sample symbols synced into it::

    from _bench_setup import bench_store

    with bench_store("kitrade-bench-x-", nhits_use_gpu=False) as bench:
        train_all(bench.settings, ["EURUSD"], force=True)

The scripts run as ``python scripts/<name>.py``, which puts this directory on
``sys.path``; a script imported from elsewhere (``bench_backtest`` imports
``_bench_walkforward``) puts it there first. kitrade is imported inside the
functions, as the scripts do, so that ``--help`` stays quick.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.db import Database
    from kitrade.data.embedded import EmbeddedPostgres

__all__ = ["SAMPLE", "BenchStore", "bench_store", "free_port", "temp_postgres"]

#: the bundled sample symbols (``kitrade.data.sources.sample``).
SAMPLE = ("EURUSD", "GOOG", "BTCUSD")
DB_NAME = "bench"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class BenchStore:
    """What ``bench_store`` yields: the temporary directory, the server, settings, the store."""

    tmp: Path
    server: EmbeddedPostgres
    settings: Settings
    db: Database

    def env(self) -> dict[str, str]:
        """Environment variables that point a kitrade process (a Serve app) at this store."""
        return {
            "TIMESCALE_HOST": "127.0.0.1",
            "TIMESCALE_PORT": str(self.server.port),
            "TIMESCALE_DB": DB_NAME,
            "KITRADE_DATA_DIR": str(self.tmp),
        }


@contextmanager
def temp_postgres(prefix: str) -> Iterator[tuple[Path, EmbeddedPostgres]]:
    """An embedded PostgreSQL in a new temporary directory, stopped and removed on exit.

    Args:
        prefix: the temporary directory's name prefix (``kitrade-bench-...-``).

    Yields:
        The temporary directory and the started server (its data in ``<dir>/pg``).
    """
    from kitrade.data.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", free_port())
        server.start()
        try:
            yield Path(tmp), server
        finally:
            server.stop(mode="immediate")


@contextmanager
def bench_store(
    prefix: str, *, sample: Sequence[str] | None = SAMPLE, **settings_fields: Any
) -> Iterator[BenchStore]:
    """``temp_postgres`` with Settings for it, a migrated open store and the sample bars.

    Args:
        prefix: the temporary directory's name prefix.
        sample: sample symbols to sync into the store (None: none).
        **settings_fields: further ``Settings`` fields (``nhits_use_gpu=False``).

    Yields:
        The set-up; its store is closed on exit (closing it earlier is fine).
    """
    from kitrade.config import Settings
    from kitrade.data.sources.sample import SampleSource
    from kitrade.data.store import open_store
    from kitrade.data.sync import sync_symbols

    with temp_postgres(prefix) as (tmp, server):
        settings = Settings(
            data_dir=tmp,
            timescale_host="127.0.0.1",
            timescale_port=server.port,
            timescale_db=DB_NAME,
            _env_file=None,
            **settings_fields,
        )
        db = open_store(settings, start=False)
        try:
            if sample:
                names = None if tuple(sample) == SAMPLE else list(sample)
                sync_symbols(db, SampleSource(), names)
            yield BenchStore(tmp=tmp, server=server, settings=settings, db=db)
        finally:
            db.close()
