"""``kitrade.data.db.connect``: one unpooled connection, failures as our error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from kitrade.config import Settings
from kitrade.data.db import connect, conninfo_for, one_row
from kitrade.errors import DatabaseUnavailableError, KitradeError
from tests.conftest import free_port


def test_connect_commits_the_block_and_autocommit_sees_it(module_settings: Settings) -> None:
    dsn = conninfo_for(module_settings)
    with connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS connect_probe (v int)")
        conn.execute("INSERT INTO connect_probe VALUES (7)")
    with connect(dsn, autocommit=True, connect_timeout=2) as conn:
        row = conn.execute("SELECT sum(v) FROM connect_probe").fetchone()
        conn.execute("DROP TABLE connect_probe")
    assert one_row(row, "probe")[0] == 7


def test_connect_rolls_back_when_the_block_raises(module_settings: Settings) -> None:
    dsn = conninfo_for(module_settings)
    with connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS connect_probe2 (v int)")
    with pytest.raises(ZeroDivisionError), connect(dsn) as conn:
        conn.execute("INSERT INTO connect_probe2 VALUES (1)")
        _ = 1 / 0
    with connect(dsn, autocommit=True) as conn:
        n = one_row(conn.execute("SELECT count(*) FROM connect_probe2").fetchone(), "n")[0]
        conn.execute("DROP TABLE connect_probe2")
    assert n == 0


def test_an_unreachable_server_is_database_unavailable_without_the_password(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        timescale_host="127.0.0.1",
        timescale_port=free_port(),
        timescale_user="postgres",
        timescale_password=SecretStr("s3cret-Not-Shown-42"),
        db_connect_timeout_s=1,
        _env_file=None,
    )
    with (
        pytest.raises(DatabaseUnavailableError, match=r"database unavailable \(sync\)") as info,
        connect(conninfo_for(settings), where="sync"),
    ):
        pass
    assert "s3cret" not in str(info.value)


def test_one_row_names_what_returned_nothing() -> None:
    assert one_row((1, 2), "x") == (1, 2)
    with pytest.raises(KitradeError, match="counting bars: expected one row, was none"):
        one_row(None, "counting bars")


def test_status_of_an_unreachable_server_reports_it_down_instead_of_raising(
    tmp_path: Path,
) -> None:
    from kitrade.data.store import store_status

    settings = Settings(
        data_dir=tmp_path,
        timescale_host="127.0.0.1",
        timescale_port=free_port(),
        timescale_user="postgres",
        db_connect_timeout_s=1,
        _env_file=None,
    )
    status = store_status(settings)
    assert not status.running
    assert status.error is not None and "database unavailable (status)" in status.error


def test_status_of_the_running_server_counts_its_rows(module_settings: Settings) -> None:
    from kitrade.data.store import store_status

    status = store_status(module_settings)
    assert status.running and status.error is None
    assert status.migrations and status.symbols >= 0 and status.bars >= 0
