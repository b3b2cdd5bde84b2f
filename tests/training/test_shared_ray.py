"""``train_all`` with shared scopes on a real local Ray cluster, tiny NHITS configurations."""

from __future__ import annotations

import pandas as pd
import pytest

from kitrade.data.bars import ingest_bars
from kitrade.data.progress import load_run
from kitrade.data.symbols import create_symbol
from kitrade.errors import InvalidInputError
from kitrade.schemas import SymbolIn
from kitrade.training.registry import active_version, list_versions
from kitrade.training.spec import SHARED_BATCH_SIZE
from tests.training.test_shared import LEVELS, TINY, bars

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seeded(module_settings, db):
    import ray

    from kitrade.cluster import connect

    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
        for i, name in enumerate(LEVELS):
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="H1"))
            conn.commit()
            ingest_bars(conn, symbol=name, bars=bars(name, 400, i))
        create_symbol(conn, spec=SymbolIn(symbol="SOLO", timeframe="D1"))
        conn.commit()
        solo = bars("SHA", 300, 7)
        solo["ts"] = pd.date_range("2020-01-01", periods=300, freq="D", tz="UTC")
        ingest_bars(conn, symbol="SOLO", bars=solo)
    connect(num_cpus=2)
    yield module_settings.model_copy(update={"promotion_tolerance": 10.0})
    ray.shutdown()


def test_both_scope_trains_own_and_shared_and_keeps_the_better_per_symbol(seeded, db):
    from kitrade.training.runs import train_all

    report = train_all(seeded, force=True, overrides=TINY, scope="both")
    assert report.status == "done", report
    by = {r.symbol: r for r in report.results}
    assert set(by) == {*LEVELS, "SOLO"}
    with db.connection() as conn:
        run = load_run(conn, run_id=report.run_id)
        for s in LEVELS:
            r = by[s]
            assert r.scope in ("symbol", "shared") and r.promoted
            assert r.reason.startswith(f"{'shared' if r.scope == 'shared' else 'own'} model chosen")
            assert active_version(conn, symbol=s).version == r.version
            rows = list_versions(conn, symbol=s)
            assert sorted(v.scope for v in rows) == ["shared", "symbol"]
            assert sorted(v.status for v in rows) == ["active", "rejected"]
        solo = list_versions(conn, symbol="SOLO")
        assert [v.scope for v in solo] == ["symbol"] and by["SOLO"].promoted
    assert by["SOLO"].reason.startswith("own model only: no other active symbol in its group D1")
    assert {s.state for s in run.symbols} == {"done"}
    assert run.status == "done"
    # the progress rows end with the gate's verdict on the pair and the version kept
    rows = {p.symbol: p for p in run.symbols}
    for s in LEVELS:
        assert rows[s].detail.startswith("promoted: ") and by[s].reason in rows[s].detail
        assert rows[s].version == by[s].version
    assert rows["SOLO"].detail.startswith("promoted: own model only")


def test_shared_scope_gates_each_symbols_shared_version(seeded, db):
    from kitrade.training.runs import train_all

    report = train_all(seeded, list(LEVELS), force=True, overrides=TINY, scope="shared")
    assert report.status == "done", report
    with db.connection() as conn:
        rows = [list_versions(conn, symbol=s)[0] for s in LEVELS]
    assert {v.scope for v in rows} == {"shared"} and len({v.artifact_path for v in rows}) == 1
    assert all(r.promoted is not None and r.reason for r in report.results)
    # the group's task got KITRADE_TRAIN_GROUP_CPUS (2, the node's all) and torch used both
    assert rows[0].config["threads"] == 2
    # a shared model steps over SHARED_BATCH_SIZE series, overrides aside
    assert rows[0].config["batch_size"] == SHARED_BATCH_SIZE


def test_a_group_asks_for_its_cpus_up_to_the_largest_node(seeded):
    from kitrade.training.groups import group_config, group_resources

    assert group_resources(seeded) == {"num_cpus": 2}
    assert group_resources(seeded.model_copy(update={"train_group_cpus": 16})) == {"num_cpus": 2}
    assert group_resources(seeded.model_copy(update={"train_group_cpus": 1})) == {"num_cpus": 1}
    assert group_config(seeded, "H1", 5000, None).batch_size == SHARED_BATCH_SIZE
    assert group_config(seeded, "H1", 5000, {"batch_size": 32}).batch_size == 32


def test_unknown_scope_is_refused(seeded):
    from kitrade.training.runs import train_all

    with pytest.raises(InvalidInputError, match="scope"):
        train_all(seeded, force=True, overrides=TINY, scope="global")
