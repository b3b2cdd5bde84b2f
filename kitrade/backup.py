"""Backup and restore: one archive with a database dump, the models dir and the RAG dir.

The archive (``.tar.gz``) holds ``manifest.json`` (format, versions, the
models dir it was taken from), ``db.dump`` (``pg_dump`` custom format),
``models/`` and ``rag/``. Restore loads the dump into an empty database,
unpacks the directories under the configured data dir and rewrites the
registry's artifact paths to the new models dir, so a fresh data dir ends in
the same state: same bars, same versions, same forecasts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kitrade.data.db import connect, conninfo_for, ensure_database, start_database
from kitrade.data.embedded import _bin_dir
from kitrade.data.store import count_tables
from kitrade.errors import ConflictError, InvalidInputError, KitradeError
from kitrade.training.registry import relocate_artifacts

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["FORMAT", "backup", "restore"]

FORMAT = "kitrade-backup-1"


def _pg_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    if settings.timescale_password is not None and not settings.embedded_db:
        env["PGPASSWORD"] = settings.timescale_password.get_secret_value()
    return env


def _pg_args(settings: Settings) -> list[str]:
    host = "127.0.0.1" if settings.embedded_db else str(settings.timescale_host)
    port = settings.embedded_pg_port if settings.embedded_db else settings.timescale_port
    return ["-h", host, "-p", str(port), "-U", settings.timescale_user]


def _tool(name: str) -> str:
    return str(_bin_dir() / name)


def backup(settings: Settings, path: Path) -> dict[str, object]:
    """Write the archive to ``path`` (atomically); returns its manifest."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="kitrade-backup-") as tmp:
        dump = Path(tmp) / "db.dump"
        res = subprocess.run(
            [
                _tool("pg_dump"),
                *_pg_args(settings),
                "-d",
                settings.timescale_db,
                "-Fc",
                "--no-owner",
                "-f",
                str(dump),
            ],
            capture_output=True,
            text=True,
            env=_pg_env(settings),
            timeout=3600,
        )
        if res.returncode != 0:
            raise KitradeError(f"pg_dump failed: {res.stderr.strip()[-500:]}")
        manifest: dict[str, object] = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "database": settings.timescale_db,
            "models_dir": str(settings.resolved_models_dir.resolve()),
            "rag_dir": str(settings.resolved_rag_dir.resolve()),
        }
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=1))
        partial = path.with_name(path.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(Path(tmp) / "manifest.json", arcname="manifest.json")
            tar.add(dump, arcname="db.dump")
            for name, src in (
                ("models", settings.resolved_models_dir),
                ("rag", settings.resolved_rag_dir),
            ):
                if src.exists():
                    tar.add(src, arcname=name, filter=_skip_temp)
        os.replace(partial, path)
    return manifest


def _skip_temp(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # half-written artifacts (.tmp-*) are not part of any version
    return None if Path(info.name).name.startswith(".tmp-") else info


def restore(settings: Settings, path: Path) -> dict[str, object]:
    """Bring an empty data dir and database to the archive's state; returns its manifest."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such backup file")
    with (
        tempfile.TemporaryDirectory(prefix="kitrade-restore-") as tmp,
        tarfile.open(path, "r:gz") as tar,
    ):
        tar.extractall(tmp, filter="data")
        try:
            manifest = json.loads((Path(tmp) / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: not a kitrade backup ({exc})") from None
        if manifest.get("format") != FORMAT:
            raise InvalidInputError(
                f"{path}: expected format {FORMAT}, was {manifest.get('format')}"
            )
        start_database(settings)
        ensure_database(settings)
        with connect(conninfo_for(settings), autocommit=True) as conn:
            tables = count_tables(conn)
        if tables:
            raise ConflictError(
                f"database {settings.timescale_db} is not empty ({tables} tables); "
                "restore needs a fresh data dir or an empty database"
            )
        models_dir, rag_dir = settings.resolved_models_dir, settings.resolved_rag_dir
        for target in (models_dir, rag_dir):
            if target.exists() and any(target.iterdir()):
                raise ConflictError(f"{target} is not empty; restore needs a fresh data dir")
        res = subprocess.run(
            [
                _tool("pg_restore"),
                *_pg_args(settings),
                "-d",
                settings.timescale_db,
                "--no-owner",
                "--exit-on-error",
                str(Path(tmp) / "db.dump"),
            ],
            capture_output=True,
            text=True,
            env=_pg_env(settings),
            timeout=3600,
        )
        if res.returncode != 0:
            raise KitradeError(f"pg_restore failed: {res.stderr.strip()[-500:]}")
        for name, target in (("models", models_dir), ("rag", rag_dir)):
            src = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.exists():
                if target.exists():
                    target.rmdir()
                os.replace(src, target) if _same_fs(src, target.parent) else _copy(src, target)
        old, new = str(manifest["models_dir"]), str(models_dir.resolve())
        with connect(conninfo_for(settings), autocommit=True) as conn:
            relocate_artifacts(conn, old=old, new=new)
    return manifest


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def _copy(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
