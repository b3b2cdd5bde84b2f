"""Band calibration end to end: a trained version carries it, the engine serves calibrated
bands (raw on request), new bars move the levels online and a restart keeps them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kitrade.data.bars import ingest_bars
from kitrade.data.calibration import lock_calibration
from kitrade.data.db import Database
from kitrade.data.symbols import create_symbol
from kitrade.schemas import SymbolIn

TINY = {
    "max_steps": 20,
    "mlp_units": 16,
    "val_check_steps": 10,
    "windows_batch_size": 32,
    "input_size": 24,
    "horizon": 6,
    "cv_windows": 80,
}
START = datetime(2024, 1, 1, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bars(close: np.ndarray, start: datetime) -> pd.DataFrame:
    ts = pd.date_range(start, periods=len(close), freq="h", tz="UTC")
    return pd.DataFrame(
        {"ts": ts, "open": close, "high": close, "low": close, "close": close, "volume": 1.0}
    )


@pytest.fixture(scope="module")
def trained(module_settings, db):
    """CALX: 400 hourly bars of a noisy wave, its model trained, evaluated and active."""
    from kitrade.training.tasks import new_run_id, train_symbol

    rng = np.random.default_rng(5)
    t = np.arange(400)
    close = 100 + np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.2, 400))
    with db.connection() as conn:
        create_symbol(conn, spec=SymbolIn(symbol="CALX", timeframe="H1"))
        conn.commit()
        ingest_bars(conn, symbol="CALX", bars=_bars(close, START))
    result = train_symbol(module_settings, "CALX", run_id=new_run_id(), overrides=TINY)
    assert result.promoted, result.reason
    return result, close


def test_the_evaluation_scores_every_method_on_the_same_points(trained):
    result, _ = trained
    prob = result.metrics["probabilistic"]
    assert set(prob["methods"]) == {
        "nhits",
        "nhits_calibrated",
        "rw_empirical",
        "rw_garch",
        "auto_ets",
        "seasonal_naive",
    }, prob["baseline_errors"]
    assert prob["origins"] == 40 and prob["calibration_origins"] == 40
    assert prob["points"] == 40 * 6
    for m in prob["methods"].values():
        assert 0 <= m["coverage_80"] <= m["coverage_95"] <= 1
        assert len(m["per_step"]["coverage_80"]) == 6
    assert set(prob["winners"]) >= {"coverage_80", "interval_score_80", "pinball"}
    assert result.metrics["calibration"]["levels"]["80"]["n_scores"][0] > 40
    assert "bands" in result.reason and "target 80/95" in result.reason


def test_the_engine_serves_calibrated_bands_and_raw_on_request(trained, db):
    result, _ = trained
    from kitrade.training.conformal import calibrated
    from kitrade.training.engine import ForecastEngine

    engine = ForecastEngine(db)
    engine.refresh()
    answer = engine.forecast("CALX")
    assert answer.bands == "calibrated" and answer.calibration is not None
    # as trained: the evaluation's updates, no bar after it yet
    assert answer.calibration.updates == result.metrics["calibration"]["updates"] > 0
    raw = answer.raw_points  # type: ignore[attr-defined]
    raw_cols = {c: np.array([getattr(p, c) for p in raw]) for c in ("mean", "lo_80", "hi_80")}
    raw_cols |= {c: np.array([getattr(p, c) for p in raw]) for c in ("lo_95", "hi_95")}
    factors = {k: lvl.factor for k, lvl in answer.calibration.levels.items()}
    expected = calibrated(raw_cols, factors)
    got = np.array([p.hi_80 for p in answer.points])
    np.testing.assert_allclose(got, expected["hi_80"])
    assert not np.allclose(got, raw_cols["hi_80"])  # calibration changed the band
    assert answer.coverage_80 is not None and answer.best_baseline is not None


def test_new_bars_move_the_levels_online_and_a_restart_keeps_them(trained, db, module_settings):
    from kitrade.services.forecasting import advance_calibration
    from kitrade.training.engine import ForecastEngine

    result, close = trained
    # 30 new bars that jump far outside any band: a run of misses at every step
    jumps = close[-1] + 5.0 * np.arange(1, 31)
    with db.connection() as conn:
        ingest_bars(conn, symbol="CALX", bars=_bars(jumps, START + timedelta(hours=400)))
        before = lock_calibration(conn, version=result.version, symbol="CALX")
        conn.commit()
    assert before is None  # nothing online yet: the artifact's calibration serves
    taken = advance_calibration(db, symbol="CALX")
    assert taken == 30 * 6  # every new bar closes one step of each of six forecasts
    assert advance_calibration(db, symbol="CALX") == 0  # nothing new: nothing taken twice
    initial = result.metrics["calibration"]["levels"]["80"]
    fresh = Database.from_settings(module_settings)  # a restart: a new pool, new engine
    try:
        with fresh.connection() as conn:
            stored = lock_calibration(conn, version=result.version, symbol="CALX")
        assert stored is not None
        assert stored["updates"] == result.metrics["calibration"]["updates"] + 30 * 6
        assert stored["alpha"]["80"][0] < initial["alpha"][0]  # misses: lower level
        engine = ForecastEngine(fresh)
        engine.refresh()
        answer = engine.forecast("CALX")
        assert answer.calibration is not None
        assert answer.calibration.updates == stored["updates"]
        assert answer.calibration.through == pd.Timestamp(START + timedelta(hours=429)).isoformat()
        assert answer.calibration.levels["80"].factor[0] > initial["factor"][0]
    finally:
        fresh.close()


def test_a_trained_versions_comparison_reads_back_everywhere(trained, db, module_settings):
    """The metrics a real training stores are what the comparison, the CLI and the API read:
    every method, each score's winner, the calibration, and the sentence."""
    from kitrade.services.quality import evaluation
    from tests.cli.test_cli import base_env, run

    result, _ = trained
    out = evaluation(db, symbol="CALX")
    assert out.version == result.version and out.probabilistic is not None
    assert out.calibration is not None and out.calibration.levels["80"].nominal == 0.8
    assert set(out.labels) >= {"nhits", "nhits_calibrated", "rw_garch", "auto_ets"}
    assert "origins" in out.summary
    (module_settings.data_dir / "cli").mkdir(exist_ok=True)
    env = base_env(module_settings.data_dir / "cli")
    env.update(
        TIMESCALE_HOST="127.0.0.1",
        TIMESCALE_PORT=str(module_settings.timescale_port),
        TIMESCALE_DB=module_settings.timescale_db,
        TIMESCALE_USER="postgres",
    )
    done = run(env, "models", "CALX", "--compare")
    assert done.returncode == 0, done.stderr
    for shown in ("NHITS raw", "NHITS calibrated", "GARCH(1,1)", "AutoETS", "seasonal naive"):
        assert shown in done.stdout, done.stdout
    assert out.summary.split()[0] in done.stdout
