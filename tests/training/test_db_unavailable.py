"""Training with the database down: our error, not the driver's.

The training side opens its own short-lived connections (``kitrade.data.db.connect``)
instead of a pool; an outage must surface as ``DatabaseUnavailableError`` (which the
CLI and the gateway map to an exit code / HTTP 503), never as a raw psycopg error.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from kitrade.config import Settings
from kitrade.errors import DatabaseUnavailableError
from kitrade.training.retrain import check_triggers
from kitrade.training.tasks import train_symbol
from kitrade.training.tune import SweepResult, train_best
from tests.conftest import free_port


@pytest.fixture
def down(tmp_path: Path) -> Settings:
    """Settings for a server that is not there (a port nothing listens on)."""
    return Settings(
        data_dir=tmp_path,
        timescale_host="127.0.0.1",
        timescale_port=free_port(),
        timescale_db="kitrade",
        timescale_user="postgres",
        db_connect_timeout_s=1,
        _env_file=None,
    )


def test_training_a_symbol_with_the_database_down_raises_database_unavailable(
    down: Settings,
) -> None:
    with pytest.raises(DatabaseUnavailableError, match="database unavailable") as info:
        train_symbol(down, "EURUSD", run_id="run-down")
    assert not isinstance(info.value, psycopg.Error)
    assert info.value.__cause__ is None  # the driver's traceback is not chained in


def test_training_a_sweeps_best_config_with_the_database_down_raises_database_unavailable(
    down: Settings,
) -> None:
    result = SweepResult(
        sweep_id="sweep-x",
        symbol="EURUSD",
        trials=1,
        best_config={"input_size": 48},
        best_val_loss=0.1,
        results=[],
    )
    with pytest.raises(DatabaseUnavailableError, match="database unavailable"):
        train_best(down, result)


def test_the_retrain_check_with_the_database_down_raises_database_unavailable(
    down: Settings,
) -> None:
    with pytest.raises(DatabaseUnavailableError, match=r"database unavailable \(retrain check\)"):
        check_triggers(down)
