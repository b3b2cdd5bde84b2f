"""Change notifications over PostgreSQL ``LISTEN``/``NOTIFY``.

Writers that change what a forecast depends on (bars of a symbol, its active
model version) call ``notify`` inside their transaction; PostgreSQL delivers
the notification on commit, to every listener, and never for a rolled-back
transaction. ``ChangeListener`` keeps a dedicated connection that listens and
calls back with the symbol; whenever it is not connected it calls back with
``None`` (meaning "anything may have changed") and reports itself not live,
so caches built on it stop trusting themselves until it is back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from kitrade.data.db import connect

__all__ = ["CHANNEL", "ChangeListener", "notify"]

CHANNEL = "kitrade_changes"
_log = logging.getLogger(__name__)


def notify(conn: psycopg.Connection, kind: str, symbol: str) -> None:
    """Queue a ``kind:symbol`` notification, sent when the current transaction commits."""
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{kind}:{symbol}"))


class ChangeListener:
    """A daemon thread that listens on ``CHANNEL`` and reconnects on failure.

    Args:
        conninfo: libpq connection string.
        on_change: called with the symbol of each notification, or ``None`` after
            the connection was (re)established or lost: drop everything.
        retry_s: wait between reconnection attempts.
    """

    def __init__(
        self,
        conninfo: str,
        on_change: Callable[[str | None], None],
        *,
        retry_s: float = 1.0,
    ) -> None:
        self._conninfo = conninfo
        self._on_change = on_change
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._live = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kitrade-listener", daemon=True)

    @property
    def live(self) -> bool:
        """True while listening: every change since the last ``None`` callback is reported."""
        return self._live.is_set()

    def start(self) -> ChangeListener:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def wait_live(self, timeout_s: float) -> bool:
        """Block until listening (or ``timeout_s``); returns ``live``."""
        return self._live.wait(timeout_s)

    def stop(self) -> None:
        """Stop listening (returns within about a second)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._on_change(None)  # changes while we were away are unknown
                    self._live.set()
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=1.0):
                            self._on_change(n.payload.partition(":")[2] or None)
            except Exception as exc:  # noqa: BLE001 - any failure: not live, retry
                if self._live.is_set():
                    _log.warning("change listener lost its connection: %s", exc)
            finally:
                self._live.clear()
                self._on_change(None)
            self._stop.wait(self._retry_s)
