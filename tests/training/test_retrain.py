"""Retraining triggers: age, new-bars events, drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from kitrade.data.bars import ingest_bars
from kitrade.data.events import BARS_INGESTED, record_event
from kitrade.data.symbols import create_symbol
from kitrade.schemas import SymbolIn
from kitrade.training.registry import (
    apply_gate,
    new_version_id,
    register_version,
    write_artifact,
)
from kitrade.training.retrain import drift_check, find_triggers, list_triggers, record_triggers


def _bars(start: str, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "volume": 0.0,
        }
    )


def _activate(conn, models: Path, symbol: str, data_end: datetime, created: datetime) -> str:
    v = new_version_id(symbol, created)
    path = write_artifact(models, symbol, v, lambda d: (d / "m").write_text(v))
    register_version(
        conn,
        version=v,
        symbol=symbol,
        artifact_path=path,
        config={},
        metrics={"model": {"rmae": 1.0, "mae": 0.01}},
        data_start=data_end - timedelta(1),
        data_end=data_end,
        n_bars=10,
    )
    apply_gate(conn, version=v, tolerance=0.0)
    conn.execute("UPDATE model_versions SET created_at = %s WHERE version = %s", (created, v))
    return v


@pytest.fixture
def world(clean_db, module_settings, tmp_path):
    with clean_db.connection() as conn:
        conn.execute("TRUNCATE model_versions, retrain_triggers")
        for s in ("AGED", "FRESH", "NEWBARS", "NOMODEL", "EMPTY"):
            create_symbol(conn, spec=SymbolIn(symbol=s))
        conn.commit()
        for s in ("AGED", "FRESH", "NEWBARS", "NOMODEL"):
            ingest_bars(conn, symbol=s, bars=_bars("2024-01-01", 48))
    return clean_db, module_settings, tmp_path


def test_age_new_bars_and_missing_model_trigger_fresh_does_not(world):
    db, settings, models = world
    now = datetime(2024, 3, 1, tzinfo=UTC)
    end = datetime(2024, 1, 2, 23, tzinfo=UTC)
    with db.connection() as conn:
        _activate(
            conn, models, "AGED", end, now - timedelta(days=settings.nhits_auto_retrain_days + 1)
        )
        _activate(conn, models, "FRESH", end, now - timedelta(days=1))
        _activate(conn, models, "NEWBARS", end, now - timedelta(days=1))
        # an event about bars the model already saw does not count
        record_event(
            conn,
            kind=BARS_INGESTED,
            symbol="FRESH",
            payload={"count": 48, "last_ts": end.isoformat()},
        )
        record_event(
            conn,
            kind=BARS_INGESTED,
            symbol="NEWBARS",
            payload={"count": 5, "last_ts": (end + timedelta(hours=5)).isoformat()},
        )
        triggers = {t.symbol: t for t in find_triggers(conn, settings=settings, now=now)}
        record_triggers(conn, list(triggers.values()), run_id="run-x")
        stored = list_triggers(conn)
    assert set(triggers) == {"AGED", "NEWBARS", "NOMODEL"}
    assert triggers["AGED"].reason == "age" and triggers["AGED"].detail["age_days"] > 7
    assert triggers["NEWBARS"].reason == "new_bars" and triggers["NEWBARS"].detail["events"] == 1
    assert triggers["NOMODEL"].reason == "no_model"
    assert {(t["symbol"], t["reason"], t["run_id"]) for t in stored} == {
        ("AGED", "age", "run-x"),
        ("NEWBARS", "new_bars", "run-x"),
        ("NOMODEL", "no_model", "run-x"),
    }


def test_drift_detected_from_live_error_and_coverage(world):
    ds = pd.date_range("2024-01-03", periods=6, freq="h", tz="UTC")
    fc = pd.DataFrame({"ds": ds, "mean": 1.0, "lo_80": 0.99, "hi_80": 1.01})
    calm = pd.DataFrame({"ds": ds, "y": [1.0, 1.005, 0.995, 1.0, 1.002, 0.998]})
    wild = pd.DataFrame({"ds": ds, "y": [1.2, 1.3, 0.8, 1.25, 0.7, 1.4]})
    assert drift_check(fc, calm, val_mae=0.01, factor=2.0, min_coverage_80=0.6) is None
    d = drift_check(fc, wild, val_mae=0.01, factor=2.0, min_coverage_80=0.6)
    assert d is not None and "live MAE" in d["why"] and d["points"] == 6
    # error fine but intervals too narrow for reality → coverage trigger
    narrow = fc.assign(lo_80=0.9999, hi_80=1.0001)
    d2 = drift_check(narrow, calm, val_mae=1.0, factor=2.0, min_coverage_80=0.6)
    assert d2 is not None and "coverage" in d2["why"]
    assert drift_check(fc, wild.iloc[:2], val_mae=0.01, factor=2.0, min_coverage_80=0.6) is None


def test_drift_trigger_uses_forecaster(world):
    db, settings, models = world
    now = datetime(2024, 1, 5, tzinfo=UTC)
    end = datetime(2024, 1, 1, 23, tzinfo=UTC)  # 24 bars after the model's data end
    with db.connection() as conn:
        for s in ("AGED", "FRESH", "NEWBARS", "NOMODEL"):
            _activate(conn, models, s, end, now - timedelta(hours=1))

        def forecaster(version):
            ds = pd.date_range(end + timedelta(hours=1), periods=24, freq="h", tz="UTC")
            off = 5.0 if version.symbol == "FRESH" else 0.0  # FRESH's model is way off
            return pd.DataFrame(
                {"ds": ds, "mean": 1.0 + off, "lo_80": 0.9 + off, "hi_80": 1.1 + off}
            )

        triggers = find_triggers(conn, settings=settings, now=now, forecaster=forecaster)
    assert [(t.symbol, t.reason) for t in triggers] == [("FRESH", "drift")]
