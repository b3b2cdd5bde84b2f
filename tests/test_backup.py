"""Backup and restore round trip: same bars, same active versions, same forecasts."""

from __future__ import annotations

import uuid

import pytest

from kitrade.backup import backup, restore
from kitrade.data.db import Database
from kitrade.data.sources.sample import SampleSource
from kitrade.data.sync import sync_symbols
from kitrade.errors import ConflictError, InvalidInputError
from kitrade.training.engine import ForecastEngine
from kitrade.training.tasks import new_run_id, train_symbol
from tests.conftest import make_settings

TINY = {"max_steps": 20, "mlp_units": 32, "val_check_steps": 10, "windows_batch_size": 64}


def _state(db: Database) -> tuple:
    with db.connection() as conn:
        bars = conn.execute(
            "SELECT symbol, count(*), sum(close) FROM bars GROUP BY 1 ORDER BY 1"
        ).fetchall()
        versions = conn.execute(
            "SELECT symbol, version, status FROM model_versions ORDER BY 1, 2"
        ).fetchall()
    return bars, versions


def test_round_trip_into_a_fresh_data_dir(module_settings, db, pg_server, tmp_path):
    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
    sync_symbols(db, SampleSource())
    train_symbol(module_settings, "GOOG", run_id=new_run_id(), overrides=TINY)
    archive = tmp_path / "kt.tar.gz"
    backup(module_settings, archive)
    assert archive.stat().st_size > 0

    fresh = make_settings(tmp_path / "fresh", pg_server, "r_" + uuid.uuid4().hex[:8])
    restore(fresh, archive)
    db2 = Database.from_settings(fresh)
    try:
        assert _state(db2) == _state(db)
        original = ForecastEngine(db)
        original.refresh()
        restored = ForecastEngine(db2)
        assert restored.refresh() == original.refresh()
        a = original.forecast("GOOG", 5)
        b = restored.forecast("GOOG", 5)
        assert [p.mean for p in a.points] == [p.mean for p in b.points]
        assert (fresh.resolved_models_dir / "GOOG").is_dir()
        with pytest.raises(ConflictError, match="not empty"):
            restore(fresh, archive)  # never over an existing state
    finally:
        db2.close()


def test_restore_refuses_a_file_that_is_not_a_backup(pg_server, tmp_path):
    import tarfile

    bogus = tmp_path / "x.tar.gz"
    with tarfile.open(bogus, "w:gz") as tar:
        (tmp_path / "manifest.json").write_text('{"format": "other"}')
        tar.add(tmp_path / "manifest.json", arcname="manifest.json")
    settings = make_settings(tmp_path / "d", pg_server, "r_" + uuid.uuid4().hex[:8])
    with pytest.raises(InvalidInputError, match="expected format"):
        restore(settings, bogus)
    with pytest.raises(InvalidInputError, match="no such backup"):
        restore(settings, tmp_path / "missing.tar.gz")
