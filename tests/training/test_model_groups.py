"""Explicit shared-model groups (``KITRADE_MODEL_GROUPS``) and retraining a group as a whole.

The setting's format and its errors; the plan (explicit groups first, the other
symbols by timeframe); a run naming one member of a group trains the whole group
on a real local Ray cluster (tiny NHITS), with an own-model task running beside
the group task, and so does the retrain scheduler answering one member's trigger;
``kitrade models`` shows each version's scope and group.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pandas as pd
import pytest

from kitrade.config import load_settings, parse_model_groups
from kitrade.data.bars import ingest_bars
from kitrade.data.events import BARS_INGESTED, record_event
from kitrade.data.progress import load_run
from kitrade.data.symbols import create_symbol, update_symbol
from kitrade.errors import ConfigError, InvalidInputError
from kitrade.schemas import SymbolIn, SymbolUpdate
from kitrade.training.groups import plan_groups, whole_groups
from kitrade.training.registry import active_version, list_versions
from tests.training.test_shared import LEVELS, TINY, bars

H1 = ("SHA", "SHB", "SHC", "SHD")


# ---------------------------------------------------------------------- the setting
def test_the_setting_parses_groups_in_order_ignoring_spaces():
    groups = parse_model_groups(" MAJORS = EURUSD, GBPUSD ;TECH=GOOG,AAPL,MSFT;")
    assert groups == {"MAJORS": ("EURUSD", "GBPUSD"), "TECH": ("GOOG", "AAPL", "MSFT")}
    assert parse_model_groups("") == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("MAJORS", "has no '='"),
        ("majors=EURUSD,GBPUSD", "group name: expected 1-20 of A-Z 0-9 _ -"),
        ("H1=EURUSD,GBPUSD", "not a timeframe"),
        ("../X=EURUSD,GBPUSD", "group name"),
        ("A=EURUSD,GBPUSD;A=GOOG,AAPL", "group A is named twice"),
        ("A=EURUSD", "expected two symbols or more"),
        ("A=EURUSD,GBPUSD;B=GBPUSD,GOOG", "symbol GBPUSD is named in A and B"),
        ("A=EURUSD,EURUSD", "named twice in group A"),
        ("A=EURUSD,gbp usd", "expected symbols of 1-20"),
    ],
)
def test_a_bad_setting_is_refused_saying_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_model_groups(text)


def test_load_settings_names_the_variable(monkeypatch):
    monkeypatch.setenv("KITRADE_MODEL_GROUPS", "A=EURUSD")
    with pytest.raises(ConfigError, match=r"KITRADE_MODEL_GROUPS: .*two symbols or more"):
        load_settings(_env_file=None)


# --------------------------------------------------------------------------- the plan
@pytest.fixture(scope="module")
def seeded(module_settings, db):
    """Four H1 symbols, one D1 symbol; ``PAIR`` groups two of the H1 ones (and GHOST, unknown)."""
    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
        for i, name in enumerate(H1):
            create_symbol(conn, spec=SymbolIn(symbol=name, timeframe="H1"))
            conn.commit()
            ingest_bars(conn, symbol=name, bars=bars(list(LEVELS)[i % 3], 400, i))
        create_symbol(conn, spec=SymbolIn(symbol="SOLO", timeframe="D1"))
        conn.commit()
        solo = bars("SHA", 300, 7)
        solo["ts"] = pd.date_range("2020-01-01", periods=300, freq="D", tz="UTC")
        ingest_bars(conn, symbol="SOLO", bars=solo)
    return module_settings.model_copy(
        update={"model_groups": "PAIR=SHA,SHB,GHOST", "promotion_tolerance": 10.0}
    )


def test_explicit_groups_come_first_and_the_rest_group_by_timeframe(seeded):
    groups, configs = plan_groups(seeded, [*H1, "SOLO"], TINY)
    assert groups == {"PAIR": ["SHA", "SHB"], "H1": ["SHC", "SHD"]}  # GHOST is not registered
    assert set(configs) == {"PAIR", "H1"} and configs["PAIR"]["max_steps"] == TINY["max_steps"]
    # a group member without its partner in the run has no shared model to train here
    assert plan_groups(seeded, ["SHA", "SHC", "SHD"], TINY)[0] == {"H1": ["SHC", "SHD"]}


def test_a_group_of_two_timeframes_is_refused_naming_the_group(seeded):
    mixed = seeded.model_copy(update={"model_groups": "MIX=SHA,SOLO"})
    with pytest.raises(InvalidInputError, match=r"group MIX .*SHA H1, SOLO D1"):
        plan_groups(mixed, ["SHA", "SOLO"], TINY)
    with pytest.raises(InvalidInputError, match="group MIX"):
        whole_groups(mixed, ["SOLO"], {})
    # a run that does not touch the group is not held up by it
    assert whole_groups(mixed, ["SHC"], {})[2] == {"SHB": "H1", "SHD": "H1"}


def test_a_run_naming_one_member_is_widened_to_its_whole_group(seeded):
    names, skips, pulled = whole_groups(seeded, ["SHA"], {})
    assert (names, skips, pulled) == (["SHA", "SHB"], {}, {"SHB": "PAIR"})
    # a member skipped as fresh trains anyway; a group with no member to train stays as it is
    names, skips, pulled = whole_groups(
        seeded, ["SHA", "SHB", "SHC", "SHD"], {"SHB": "fresh", "SHC": "fresh", "SHD": "fresh"}
    )
    assert names == ["SHA", "SHB", "SHC", "SHD"] and pulled == {"SHB": "PAIR"}
    assert skips == {"SHC": "fresh", "SHD": "fresh"}


# --------------------------------------------------------------------- on a Ray cluster
@pytest.fixture(scope="module")
def ray_run(seeded):
    """``train_all(["SHA", "SOLO"], scope="shared")`` on a two-CPU local cluster."""
    import ray

    from kitrade.cluster import connect
    from kitrade.training.runs import train_all

    connect(num_cpus=2)
    try:
        yield train_all(seeded, ["SHA", "SOLO"], force=True, overrides=TINY, scope="shared")
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_naming_one_member_retrains_the_whole_group_and_each_member_gets_a_version(ray_run, db):
    report = ray_run
    assert report.status == "done", report
    by = {r.symbol: r for r in report.results}
    assert list(by) == ["SHA", "SOLO", "SHB"]
    assert "trained with its group PAIR" in by["SHB"].reason
    assert "trained with its group" not in by["SHA"].reason
    assert (by["SHB"].with_group, by["SHA"].with_group, by["SOLO"].with_group) == (
        "PAIR",
        None,
        None,
    )
    with db.connection() as conn:
        rows = {s: list_versions(conn, symbol=s) for s in (*H1, "SOLO")}
        run = load_run(conn, run_id=report.run_id)
        params = conn.execute(
            "SELECT params FROM training_runs WHERE run_id = %s", (report.run_id,)
        ).fetchone()[0]
    for s in ("SHA", "SHB"):
        assert [(v.scope, v.group, v.version) for v in rows[s]] == [
            ("shared", "PAIR", by[s].version)
        ]
    assert rows["SHA"][0].artifact_path == rows["SHB"][0].artifact_path
    assert "/shared/PAIR/" in rows["SHA"][0].artifact_path
    assert [(v.scope, v.group) for v in rows["SOLO"]] == [("symbol", None)]  # alone in D1
    assert rows["SHC"] == [] and rows["SHD"] == []  # the H1 group was not asked for
    assert params["with_group"] == {"SHB": "PAIR"} and params["symbols"] == ["SHA", "SOLO", "SHB"]
    assert {p.symbol: p.state for p in run.symbols} == dict.fromkeys(["SHA", "SHB", "SOLO"], "done")


@pytest.mark.slow
def test_the_own_model_trains_while_the_group_trains(ray_run, db):
    with db.connection() as conn:
        run = load_run(conn, run_id=ray_run.run_id)
    p = {s.symbol: s for s in run.symbols}
    # one phase after the other, SOLO would start only after the group ended
    assert p["SOLO"].started_at < p["SHA"].ended_at, (p["SOLO"], p["SHA"])


@pytest.mark.slow
def test_kitrade_models_shows_scope_and_group(ray_run, seeded):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KITRADE_", "TIMESCALE_", "NHITS_", "RAY_"))
    }
    env |= {
        "TIMESCALE_HOST": "127.0.0.1",
        "TIMESCALE_PORT": str(seeded.timescale_port),
        "TIMESCALE_DB": seeded.timescale_db,
        "TIMESCALE_USER": "postgres",
        "KITRADE_DATA_DIR": str(seeded.data_dir),
        "COLUMNS": "260",
    }
    done = subprocess.run(
        [sys.executable, "-m", "kitrade.cli", "models"],
        env=env, capture_output=True, text=True, timeout=120, cwd=seeded.data_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "scope" in done.stdout and "group" in done.stdout
    lines = {s: next(x for x in done.stdout.splitlines() if f" {s} " in x) for s in ("SHB", "SOLO")}
    assert " shared " in lines["SHB"] and " PAIR " in lines["SHB"]
    assert " symbol " in lines["SOLO"] and " PAIR " not in lines["SOLO"]


@pytest.mark.slow
def test_the_retrain_scheduler_retrains_the_whole_group_of_a_triggered_symbol(ray_run, seeded, db):
    import ray

    from kitrade.training.retrain import RetrainScheduler

    with db.connection() as conn:
        for s in ("SHC", "SHD"):  # no model yet: they would trigger too; out of this check
            update_symbol(conn, symbol=s, changes=SymbolUpdate(active=False))
        sha = active_version(conn, symbol="SHA")
        assert sha is not None
        after = (sha.data_end + timedelta(hours=1)).isoformat()
        record_event(conn, kind=BARS_INGESTED, symbol="SHA", payload={"count": 1, "last_ts": after})
    scheduler = RetrainScheduler.remote(seeded.model_copy(update={"model_scope": "shared"}), TINY)
    try:
        done = ray.get(scheduler.check_now.remote(False), timeout=600)
    finally:
        ray.kill(scheduler)
    assert [(t["symbol"], t["reason"]) for t in done["triggers"]] == [("SHA", "new_bars")]
    with db.connection() as conn:
        run = load_run(conn, run_id=done["run_id"])
        newest = {s: list_versions(conn, symbol=s)[0] for s in ("SHA", "SHB", "SOLO")}
    assert {p.symbol: p.state for p in run.symbols} == {"SHA": "done", "SHB": "done"}
    for s in ("SHA", "SHB"):  # SHB was fresh: it trains because its group does
        assert (newest[s].run_id, newest[s].scope, newest[s].group) == (
            done["run_id"],
            "shared",
            "PAIR",
        )
    assert newest["SHA"].artifact_path == newest["SHB"].artifact_path
    assert newest["SOLO"].run_id == ray_run.run_id  # not in the group: untouched
