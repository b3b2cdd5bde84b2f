"""Registry: atomic artifacts, checksums, the promotion gate, promote and rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg.types.json import Jsonb

from kitrade.errors import ConflictError, InvalidInputError, NotFoundError
from kitrade.training.registry import (
    CorruptArtifactError,
    active_version,
    apply_gate,
    get_version,
    list_versions,
    new_version_id,
    promote,
    register_version,
    rollback,
    validate_version,
    verify_artifact,
    write_artifact,
)


def _save(payload: bytes):
    def save(d: Path) -> None:
        (d / "model.bin").write_bytes(payload)
        (d / "config.json").write_text("{}")

    return save


def _candidate(
    conn,
    models_dir: Path,
    symbol: str,
    rmae: float | None,
    when: datetime,
    *,
    beats: bool = False,
    bands: tuple[float, float, float] | None = None,
) -> str:
    """A registered candidate; ``bands``: calibrated coverage 80, 95 and interval score 80
    (the random walk's is 1.0, GARCH's 0.8) of its evaluation."""
    version = new_version_id(symbol, when)
    path = write_artifact(models_dir, symbol, version, _save(version.encode()))
    metrics = (
        {}
        if rmae is None
        else {
            "model": {"rmae": rmae},
            "naive": {"rmae": 1.0},
            "beats_naive": beats,
            "verdict": "beats naive" if beats else "no better than naive",
            "dm_pvalue": 0.01 if beats else 0.4,
            "n_origins": 250,
        }
    )
    if bands is not None:
        metrics["probabilistic"] = {
            "methods": {
                "nhits_calibrated": {
                    "coverage_80": bands[0],
                    "coverage_95": bands[1],
                    "interval_score_80": bands[2],
                },
                "rw_empirical": {"coverage_80": 0.7, "coverage_95": 0.9, "interval_score_80": 1.0},
                "rw_garch": {"coverage_80": 0.8, "coverage_95": 0.95, "interval_score_80": 0.8},
            }
        }
    register_version(
        conn,
        version=version,
        symbol=symbol,
        artifact_path=path,
        config={"h": 24},
        metrics=metrics,
        data_start=when - timedelta(days=10),
        data_end=when,
        n_bars=240,
    )
    return version


@pytest.fixture
def reg(clean_db):
    with clean_db.connection() as conn:
        conn.execute("TRUNCATE model_versions")
    return clean_db


def test_atomic_write_leaves_no_version_when_save_crashes(tmp_path):
    version = new_version_id("EURUSD")

    def crash(d: Path) -> None:
        (d / "half.bin").write_bytes(b"x" * 10)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_artifact(tmp_path, "EURUSD", version, crash)
    assert list((tmp_path / "EURUSD").iterdir()) == []
    path = write_artifact(tmp_path, "EURUSD", version, _save(b"ok"))
    verify_artifact(path)
    assert sorted(p.name for p in (tmp_path / "EURUSD").iterdir()) == [version]


def test_corrupted_artifact_is_detected(tmp_path):
    path = write_artifact(tmp_path, "GOOG", new_version_id("GOOG"), _save(b"weights"))
    (path / "model.bin").write_bytes(b"garbage")
    with pytest.raises(CorruptArtifactError, match=r"model\.bin fails its checksum"):
        verify_artifact(path)
    (path / "model.bin").unlink()
    with pytest.raises(CorruptArtifactError, match="missing"):
        verify_artifact(path)


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "EURUSD",
        "eurusd-20240101T000000-abcdef",
        "EURUSD-20240101T000000-abcdef/../x",
        "",
    ],
)
def test_version_ids_refuse_path_tricks(bad):
    with pytest.raises(InvalidInputError):
        validate_version(bad)


def test_gate_promotes_first_and_better_rejects_worse(reg, tmp_path):
    t = datetime(2024, 1, 1, tzinfo=UTC)
    with reg.connection() as conn:
        v1 = _candidate(conn, tmp_path, "EURUSD", 1.00, t)
        d1 = apply_gate(conn, version=v1, tolerance=0.05)
        assert d1.promoted and "first version" in d1.reason
        v2 = _candidate(conn, tmp_path, "EURUSD", 1.04, t + timedelta(hours=1))  # within 5 %
        assert apply_gate(conn, version=v2, tolerance=0.05).promoted
        v3 = _candidate(conn, tmp_path, "EURUSD", 1.30, t + timedelta(hours=2))
        d3 = apply_gate(conn, version=v3, tolerance=0.05)
        assert not d3.promoted and "worse than active" in d3.reason and v2 in d3.reason
        assert active_version(conn, symbol="EURUSD").version == v2
        assert get_version(conn, version=v3).status == "rejected"
        assert get_version(conn, version=v3).reason == d3.reason
        assert get_version(conn, version=v1).status == "retired"
        with pytest.raises(ConflictError):
            apply_gate(conn, version=v3, tolerance=0.05)
        statuses = {v.version: v.status for v in list_versions(conn, symbol="EURUSD")}
    assert statuses == {v1: "retired", v2: "active", v3: "rejected"}


def test_unevaluated_candidate_is_rejected_when_an_evaluated_one_is_active(reg, tmp_path):
    t = datetime(2024, 1, 1, tzinfo=UTC)
    with reg.connection() as conn:
        apply_gate(conn, version=_candidate(conn, tmp_path, "GOOG", 0.9, t), tolerance=0.0)
        d = apply_gate(
            conn, version=_candidate(conn, tmp_path, "GOOG", None, t + timedelta(1)), tolerance=0.0
        )
    assert not d.promoted and "no evaluation" in d.reason


def test_manual_promote_and_rollback(reg, tmp_path):
    t = datetime(2024, 1, 1, tzinfo=UTC)
    with reg.connection() as conn:
        v1 = _candidate(conn, tmp_path, "BTCUSD", 1.0, t)
        apply_gate(conn, version=v1, tolerance=0.0)
        v2 = _candidate(conn, tmp_path, "BTCUSD", 2.0, t + timedelta(hours=1))
        assert not apply_gate(conn, version=v2, tolerance=0.0).promoted
        assert promote(conn, symbol="BTCUSD", version=v2).status == "active"  # override
        assert rollback(conn, symbol="BTCUSD").version == v1
        assert active_version(conn, symbol="BTCUSD").version == v1
        with pytest.raises(InvalidInputError, match="belongs to BTCUSD"):
            promote(conn, symbol="GOOG", version=v2)
        with pytest.raises(NotFoundError):
            promote(conn, symbol="BTCUSD", version=new_version_id("BTCUSD"))
        assert rollback(conn, symbol="BTCUSD", to_version=v2).version == v2


def test_promote_refuses_corrupt_artifact(reg, tmp_path):
    t = datetime(2024, 1, 1, tzinfo=UTC)
    with reg.connection() as conn:
        v1 = _candidate(conn, tmp_path, "EURUSD", 1.0, t)
        apply_gate(conn, version=v1, tolerance=0.0)
        v2 = _candidate(conn, tmp_path, "EURUSD", 3.0, t + timedelta(hours=1))
        apply_gate(conn, version=v2, tolerance=0.0)
        (Path(get_version(conn, version=v2).artifact_path) / "model.bin").write_bytes(b"x")
        with pytest.raises(CorruptArtifactError):
            promote(conn, symbol="EURUSD", version=v2)
        assert active_version(conn, symbol="EURUSD").version == v1


def test_database_allows_one_active_version_per_symbol(reg, tmp_path):
    import psycopg

    t = datetime(2024, 1, 1, tzinfo=UTC)
    with reg.connection() as conn:
        a = _candidate(conn, tmp_path, "EURUSD", 1.0, t)
        b = _candidate(conn, tmp_path, "EURUSD", 1.0, t + timedelta(1))
        conn.execute("UPDATE model_versions SET status='active' WHERE version=%s", (a,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE model_versions SET status='active' WHERE version=%s", (b,))


def test_gate_puts_the_verdict_against_naive_before_the_relative_mae(reg, tmp_path):
    t = datetime(2024, 1, 1, tzinfo=UTC)
    with reg.connection() as conn:
        v1 = _candidate(conn, tmp_path, "GOOG", 0.97, t)  # rMAE < 1 but not significant
        assert apply_gate(conn, version=v1, tolerance=0.05).promoted
        # a significant winner replaces it even with a larger rMAE
        v2 = _candidate(conn, tmp_path, "GOOG", 0.99, t + timedelta(hours=1), beats=True)
        d2 = apply_gate(conn, version=v2, tolerance=0.0)
        assert d2.promoted and "beats naive (DM p=0.01)" in d2.reason
        # a smaller rMAE without the test's backing does not replace a tested winner
        v3 = _candidate(conn, tmp_path, "GOOG", 0.90, t + timedelta(hours=2))
        d3 = apply_gate(conn, version=v3, tolerance=0.05)
        assert not d3.promoted and "point no better than naive (rMAE 0.900" in d3.reason
        assert "vs active's point beats naive" in d3.reason
        # equal verdicts: the relative MAE within the tolerance decides
        v4 = _candidate(conn, tmp_path, "GOOG", 0.98, t + timedelta(hours=3), beats=True)
        assert apply_gate(conn, version=v4, tolerance=0.0).promoted
        assert active_version(conn, symbol="GOOG").version == v4


def test_migration_renames_stored_mase_and_withdraws_untested_claims(reg, tmp_path):
    from kitrade.training.migrations import legacy_metrics
    from kitrade.training.registry import rewrite_metrics

    t = datetime(2024, 1, 1, tzinfo=UTC)
    old = {
        "model": {"mae": 0.1, "mase": 0.8},
        "naive": {"mae": 0.125, "mase": 1.0},
        "seasonal_naive": {"mae": 0.2, "mase": 1.6},
        "beats_naive": True,
        "windows": 3,
        "points": 72,
    }
    with reg.connection() as conn:
        v = _candidate(conn, tmp_path, "EURUSD", None, t)
        conn.execute("UPDATE model_versions SET metrics = %s WHERE version = %s", (Jsonb(old), v))
        tested = _candidate(conn, tmp_path, "EURUSD", 0.9, t + timedelta(1), beats=True)
        before = get_version(conn, version=tested).metrics
        assert rewrite_metrics(conn, legacy_metrics) == 1  # the tested version is left alone
        assert rewrite_metrics(conn, legacy_metrics) == 0  # idempotent
        m = get_version(conn, version=v).metrics
        assert get_version(conn, version=tested).metrics == before
    assert m["model"] == {"mae": 0.1, "rmae": 0.8} and m["seasonal_naive"]["rmae"] == 1.6
    assert m["n_origins"] == 3 and "windows" not in m and m["points"] == 72
    assert m["beats_naive"] is False and m["verdict"] == "no better than naive"
    assert m["dm_pvalue"] is None


def test_gate_weighs_band_quality_after_the_verdict_against_naive(reg, tmp_path):
    t = datetime(2024, 1, 1, tzinfo=UTC)
    with reg.connection() as conn:
        # bands off target (70 % for 80 %) but the smaller rMAE
        v1 = _candidate(conn, tmp_path, "EURUSD", 0.95, t, bands=(0.70, 0.90, 0.90))
        first = apply_gate(conn, version=v1, tolerance=0.05)
        assert first.promoted
        assert "bands 70.0 %/90.0 % (target 80/95), interval score 1.12 of GARCH" in first.reason
        # on target, a worse rMAE: the bands decide
        v2 = _candidate(
            conn, tmp_path, "EURUSD", 1.02, t + timedelta(1), bands=(0.796, 0.948, 0.95)
        )
        d2 = apply_gate(conn, version=v2, tolerance=0.0)
        assert d2.promoted, d2.reason
        assert "bands 79.6 %/94.8 % (target 80/95), interval score 1.19 of GARCH" in d2.reason
        assert "point no better than naive (rMAE 1.020, p 0.4)" in d2.reason
        # both on target: the lower interval score (relative to the random walk's) decides
        v3 = _candidate(conn, tmp_path, "EURUSD", 0.90, t + timedelta(2), bands=(0.80, 0.95, 1.1))
        d3 = apply_gate(conn, version=v3, tolerance=0.05)
        assert not d3.promoted and "interval score 1.100 vs active's 0.950" in d3.reason
        v4 = _candidate(conn, tmp_path, "EURUSD", 1.10, t + timedelta(3), bands=(0.81, 0.94, 0.9))
        assert apply_gate(conn, version=v4, tolerance=0.0).promoted
        # a tested point winner still comes first, whatever its bands
        v5 = _candidate(
            conn, tmp_path, "EURUSD", 0.99, t + timedelta(4), beats=True, bands=(0.6, 0.8, 2.0)
        )
        assert apply_gate(conn, version=v5, tolerance=0.0).promoted
