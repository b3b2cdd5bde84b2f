"""Shared NHITS models: one network over several series, per-symbol rows, the scope gate, serving."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kitrade.data.bars import ingest_bars
from kitrade.data.db import Database
from kitrade.data.migrations import MIGRATIONS
from kitrade.data.symbols import create_symbol
from kitrade.errors import InvalidInputError, NotFoundError
from kitrade.schemas import SymbolIn
from kitrade.training.evaluation import fit_and_evaluate_shared
from kitrade.training.nhits import FittedModel
from kitrade.training.registry import (
    active_version,
    gate_scopes,
    get_version,
    new_version_id,
    register_version,
    write_artifact,
)
from kitrade.training.spec import default_config
from tests.conftest import make_settings

TINY = {
    "max_steps": 30,
    "mlp_units": 32,
    "val_check_steps": 10,
    "windows_batch_size": 64,
    "input_size": 48,
}
LEVELS = {"SHA": 1.1, "SHB": 150.0, "SHC": 30_000.0}  # EURUSD-, USDJPY-, BTC-like scales


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def close_of(level: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    wave = np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.05, n))
    return level * (1 + 0.01 * wave)


def series(name: str, n: int = 400, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": name,
            "ds": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "y": close_of(LEVELS[name], n, seed),
        }
    )


def bars(name: str, n: int, seed: int) -> pd.DataFrame:
    close = close_of(LEVELS[name], n, seed)
    return pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": 1.0,
        }
    )


@pytest.fixture(scope="module")
def shared_fit():
    frames = [series(s, seed=i) for i, s in enumerate(LEVELS)]
    config = default_config("H1", 400, **TINY)
    model, reports = fit_and_evaluate_shared(frames, config)
    return frames, config, model, reports


def test_shared_model_trains_on_three_series_and_forecasts_each_at_its_scale(shared_fit, tmp_path):
    frames, config, model, reports = shared_fit
    assert set(reports) == set(LEVELS)
    for name, report in reports.items():
        assert report.n_origins == config.cv_windows and report.horizon == config.horizon
        assert report.model.rmae is not None and report.naive.rmae == 1.0
        assert report.verdict in ("beats naive", "no better than naive"), name
    outs = model.predict_many(frames)
    for frame, out in zip(frames, outs, strict=True):
        level = frame["y"].iloc[-1]
        assert len(out) == config.horizon
        # per-series scaling: each forecast lives at its own series' level (1.1 vs 30 000)
        assert np.all(np.abs(out["mean"] / level - 1) < 0.1), (frame["unique_id"][0], out)
        assert (out["lo_95"] <= out["mean"]).all() and (out["mean"] <= out["hi_95"]).all()
    model.save(tmp_path)
    back = FittedModel.load(tmp_path)
    assert set(back.history["unique_id"]) == set(LEVELS)
    again = back.predict_many(frames)
    for a, b in zip(outs, again, strict=True):
        np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-5)
    with pytest.raises(InvalidInputError, match="shared model needs the series"):
        back.predict()
    own = back.predict(back.series("SHB"))  # the drift check's forecast from the data end
    np.testing.assert_allclose(own["mean"], outs[1]["mean"], rtol=1e-5)
    with pytest.raises(NotFoundError, match="not a series of this model"):
        back.series("NOPE")


def test_shared_fit_refuses_one_series_or_repeated_ids():
    config = default_config("H1", 400, **TINY)
    with pytest.raises(InvalidInputError, match="two or more series"):
        fit_and_evaluate_shared([series("SHA")], config)
    with pytest.raises(InvalidInputError, match="distinct unique_id"):
        fit_and_evaluate_shared([series("SHA"), series("SHA", seed=3)], config)


# ------------------------------------------------------------------- registry and gate
def _metrics(rmae: float, beats: bool = False) -> dict:
    return {
        "model": {"rmae": rmae},
        "naive": {"rmae": 1.0},
        "beats_naive": beats,
        "verdict": "beats naive" if beats else "no better than naive",
        "dm_pvalue": 0.01 if beats else 0.4,
        "n_origins": 100,
    }


def _pair(conn, tmp_path, symbol: str, own: dict, shared: dict, shared_path) -> tuple[str, str]:
    when = datetime(2024, 6, 1, tzinfo=UTC)
    a = new_version_id(symbol)
    path = write_artifact(tmp_path, symbol, a, lambda d: (d / "w.bin").write_bytes(a.encode()))
    versions = []
    for version, p, metrics, scope, group in (
        (a, path, own, "symbol", None),
        (new_version_id(symbol), shared_path, shared, "shared", "H1"),
    ):
        register_version(
            conn, version=version, symbol=symbol, artifact_path=p, config={}, metrics=metrics,
            data_start=when - timedelta(days=9), data_end=when, n_bars=200,
            scope=scope, group=group,
        )  # fmt: skip
        versions.append(version)
    return versions[0], versions[1]


def test_scope_gate_activates_the_better_model_per_symbol_and_says_by_how_much(clean_db, tmp_path):
    shared_path = write_artifact(
        tmp_path / "shared", "H1", new_version_id("H1"), lambda d: (d / "w.bin").write_bytes(b"s")
    )
    with clean_db.connection() as conn:
        conn.execute("TRUNCATE model_versions")
        a_own, a_sh = _pair(conn, tmp_path, "SHA", _metrics(0.95), _metrics(0.90), shared_path)
        b_own, b_sh = _pair(conn, tmp_path, "SHB", _metrics(0.92), _metrics(0.97), shared_path)
        c_own, c_sh = _pair(
            conn, tmp_path, "SHC", _metrics(0.80), _metrics(0.99, beats=True), shared_path
        )
        da = gate_scopes(conn, own=a_own, shared=a_sh, tolerance=0.05)
        db_ = gate_scopes(conn, own=b_own, shared=b_sh, tolerance=0.05)
        dc = gate_scopes(conn, own=c_own, shared=c_sh, tolerance=0.05)
        conn.commit()
        assert da.version == a_sh and da.promoted
        assert "shared model chosen: rMAE 0.900 vs own 0.950 (-5.3%)" in da.reason
        assert db_.version == b_own and "own model chosen over shared (rMAE 0.920 vs" in db_.reason
        assert dc.version == c_sh and "beats naive and the other does not" in dc.reason
        active = {s: active_version(conn, symbol=s) for s in ("SHA", "SHB", "SHC")}
        assert active["SHA"].scope == "shared" and active["SHA"].group == "H1"
        assert active["SHA"].artifact_path == active["SHC"].artifact_path == str(shared_path)
        assert active["SHB"].scope == "symbol" and active["SHB"].group is None
        loser = get_version(conn, version=a_own)
        assert loser.status == "rejected" and loser.reason.startswith("not chosen: shared")
        with pytest.raises(InvalidInputError, match="own and shared"):
            gate_scopes(conn, own=a_sh, shared=a_own, tolerance=0.05)


def test_register_refuses_a_shared_row_without_group(clean_db, tmp_path):
    with clean_db.connection() as conn, pytest.raises(InvalidInputError, match="scope"):
        register_version(
            conn, version=new_version_id("SHA"), symbol="SHA", artifact_path=tmp_path,
            config={}, metrics={}, data_start=datetime(2024, 1, 1, tzinfo=UTC),
            data_end=datetime(2024, 2, 1, tzinfo=UTC), n_bars=10, scope="shared",
        )  # fmt: skip


def test_migration_102_gives_existing_rows_symbol_scope(clean_db, tmp_path):
    when = datetime(2024, 6, 1, tzinfo=UTC)
    with clean_db.connection() as conn:
        conn.execute("TRUNCATE model_versions")
        conn.execute(
            "ALTER TABLE model_versions DROP COLUMN scope, DROP COLUMN model_group;"
            " DROP INDEX model_versions_artifact"
        )
        conn.execute(
            "INSERT INTO model_versions (version, symbol, status, artifact_path, config,"
            " data_start, data_end, n_bars) VALUES (%s, 'OLD', 'active', %s, '{}', %s, %s, 9)",
            (new_version_id("OLD"), str(tmp_path), when, when),
        )
        MIGRATIONS[102].apply(conn)
        conn.commit()
        old = active_version(conn, symbol="OLD")
        assert old is not None and old.scope == "symbol" and old.group is None


# ------------------------------------------------------- training both scopes, serving
@pytest.fixture(scope="module")
def seeded(module_settings, db):
    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
        for i, name in enumerate(LEVELS):
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="H1"))
            conn.commit()
            ingest_bars(conn, symbol=name, bars=bars(name, 400 + 20 * i, i))
        create_symbol(conn, spec=SymbolIn(symbol="DAILY", timeframe="D1"))
        conn.commit()
    return module_settings


@pytest.fixture(scope="module")
def both(seeded, db):
    """``both`` scope without Ray: own models and the shared one as candidates, then the gate."""
    from kitrade.training.groups import gate_both, plan_groups, train_group
    from kitrade.training.tasks import new_run_id, train_symbol

    names = [*LEVELS, "DAILY"]
    groups, configs = plan_groups(seeded, names, TINY)
    run_id = new_run_id()
    updates: list[dict] = []
    shared = train_group(
        seeded, "H1", groups["H1"], run_id=run_id, overrides=configs["H1"],
        reporter=updates.append, gate=False,
    )  # fmt: skip
    own = [
        train_symbol(seeded, s, run_id=run_id, overrides=configs["H1"], gate=False)
        for s in groups["H1"]
    ]
    chosen = [gate_both(seeded, o, sh) for o, sh in zip(own, shared, strict=True)]
    return groups, own, shared, chosen, updates


def test_groups_are_timeframes_with_two_symbols_or_more(both):
    groups = both[0]
    assert groups == {"H1": list(LEVELS)}  # DAILY alone in D1: it trains its own model only


def test_both_scopes_are_evaluated_on_the_same_windows_and_the_gate_picks_per_symbol(both, db):
    _, own, shared, chosen, updates = both
    for o, sh, c in zip(own, shared, chosen, strict=True):
        assert o.promoted is None and sh.promoted is None  # candidates until compared
        for key in ("eval_start", "eval_end", "n_origins", "points", "step_size", "horizon"):
            assert o.metrics[key] == sh.metrics[key], (o.symbol, key)
        assert o.metrics["naive"] == sh.metrics["naive"]  # same points, same baseline
        assert c.version in (o.version, sh.version) and c.promoted
        winner = "shared" if c.version == sh.version else "own"
        assert c.reason.startswith(f"{winner} model chosen"), c.reason
        with db.connection() as conn:
            active = active_version(conn, symbol=o.symbol)
            other = get_version(conn, version=o.version if winner == "shared" else sh.version)
        assert active.version == c.version and active.scope == (
            "shared" if winner == "shared" else "symbol"
        )
        assert other.status == "rejected" and other.reason.startswith("not chosen:")
    paths = set()
    with db.connection() as conn:
        for sh in shared:
            v = get_version(conn, version=sh.version)
            assert v.scope == "shared" and v.group == "H1"
            paths.add(v.artifact_path)
    assert len(paths) == 1 and "/shared/H1/" in paths.pop()  # one artifact, three rows
    reported = {u["symbol"] for u in updates if u.get("state") == "done"}
    assert reported == set(LEVELS)  # the shared run reports progress for each of its symbols


def _serve_shared(db, shared) -> None:
    """Make every symbol's shared version the active one (the manual override)."""
    from kitrade.training.registry import promote

    with db.connection() as conn:
        for sh in shared:
            promote(conn, symbol=sh.symbol, version=sh.version)
        conn.commit()


def test_engine_serves_two_symbols_of_one_shared_artifact_in_one_forward_pass(both, db):
    from kitrade.training.engine import ForecastEngine

    shared = both[2]
    _serve_shared(db, shared)
    engine = ForecastEngine(db)
    served = engine.refresh()
    assert {served[s.symbol] for s in shared} == {s.version for s in shared}
    models = {id(m.model) for m in engine._models.values()}
    assert len(models) == 1  # loaded once for all three symbols
    model = next(iter(engine._models.values())).model
    calls: list[int] = []
    real = model.predict_many

    def counting(frames, horizon=None):
        calls.append(len(frames))
        return real(frames, horizon)

    model.predict_many = counting
    answers = engine.forecast_many([("SHA", 3), ("SHB", None), ("SHA", 2)])
    assert calls == [2]  # two symbols, one forward pass
    assert engine.pass_sizes() == [2]  # and the engine says so
    assert [a.symbol for a in answers] == ["SHA", "SHB", "SHA"]
    assert [len(a.points) for a in answers] == [3, answers[1].max_horizon, 2]
    assert abs(answers[0].points[0].mean / LEVELS["SHA"] - 1) < 0.1
    assert abs(answers[1].points[0].mean / LEVELS["SHB"] - 1) < 0.1
    assert answers[0].version != answers[1].version  # each symbol's own row
    engine.forecast_many([("SHA", 3), ("SHB", 3)])
    assert calls == [2]  # both cached now
    assert engine.pass_sizes(reset=True) == [2]  # a cached answer costs no pass
    assert engine.pass_sizes() == []


def test_engine_counts_the_series_of_each_forward_pass_by_model(both, db):
    """A batch mixing a symbol's own model and the shared one: one pass per model, each
    recorded with the series it carried; the counter forgets on reset."""
    from kitrade.training.engine import ForecastEngine
    from kitrade.training.registry import promote

    _, own, shared, _, _ = both
    _serve_shared(db, shared)
    with db.connection() as conn:
        promote(conn, symbol=own[0].symbol, version=own[0].version)  # its own model again
        conn.commit()
    engine = ForecastEngine(db)
    engine.refresh()
    names = [s.symbol for s in shared]
    answers = engine.forecast_many([(n, 2) for n in names])
    assert [a.version for a in answers] == [own[0].version] + [s.version for s in shared[1:]]
    assert sorted(engine.pass_sizes()) == [1, len(names) - 1]
    engine.forecast_many([(n, 2) for n in names])  # all cached: no pass
    assert sorted(engine.pass_sizes(reset=True)) == [1, len(names) - 1]
    assert engine.pass_sizes() == []


def test_backup_restores_a_shared_artifact_for_every_symbol(
    both, db, module_settings, pg_server, tmp_path
):
    from kitrade.backup import backup, restore
    from kitrade.training.engine import ForecastEngine

    _serve_shared(db, both[2])
    archive = tmp_path / "kt.tar.gz"
    backup(module_settings, archive)
    fresh = make_settings(tmp_path / "fresh", pg_server, "s_" + uuid.uuid4().hex[:8])
    restore(fresh, archive)
    db2 = Database.from_settings(fresh)
    try:
        with db2.connection() as conn:
            paths = {active_version(conn, symbol=s).artifact_path for s in LEVELS}
        assert len(paths) == 1
        assert paths.pop().startswith(str(fresh.resolved_models_dir.resolve()))
        original, restored = ForecastEngine(db), ForecastEngine(db2)
        assert restored.refresh() == original.refresh()
        a, b = original.forecast("SHC", 4), restored.forecast("SHC", 4)
        assert [p.mean for p in a.points] == [p.mean for p in b.points]
    finally:
        db2.close()
