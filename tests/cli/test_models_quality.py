"""``kitrade models`` and ``kitrade models SYMBOL --compare`` as a user runs them, on versions
registered in a real PostgreSQL with and without the stored band scores."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kitrade.cli.render import versions_table
from kitrade.services import quality
from tests.cli.test_cli import base_env, run
from tests.services.test_quality import (
    ETS_ERROR,
    GARCH_BEATS,
    GARCH_WINNERS,
    NHITS_HOLDS,
    NHITS_WINNERS,
    point_metrics,
    quality_metrics,
    register,
    report,
)

GARCH_SENTENCE = "On these 250 origins GARCH(1,1) bands beat NHITS on every score."


@pytest.fixture(scope="module")
def registered(db, tmp_path_factory) -> dict[str, str]:
    """EURUSD: an active version evaluated before band scores, a GARCH-beaten candidate and
    an NHITS-holds candidate; GOOG: one version."""
    artifact = Path(tmp_path_factory.mktemp("model"))
    with db.connection() as conn:
        conn.execute("TRUNCATE model_versions")
        old = register(conn, "EURUSD", point_metrics(), artifact)
        conn.execute("UPDATE model_versions SET status = 'active' WHERE version = %s", (old,))
        garch = report(GARCH_BEATS, GARCH_WINNERS, ETS_ERROR)
        beaten = register(conn, "EURUSD", quality_metrics(garch), artifact)
        holds = register(
            conn, "EURUSD", quality_metrics(report(NHITS_HOLDS, NHITS_WINNERS)), artifact
        )
        goog = register(conn, "GOOG", point_metrics(), artifact)
    return {"old": old, "beaten": beaten, "holds": holds, "goog": goog}


@pytest.fixture(scope="module")
def env(module_settings, tmp_path_factory) -> dict[str, str]:
    """The CLI's environment on the module's database."""
    env = base_env(tmp_path_factory.mktemp("cli-models"))
    env.update(
        TIMESCALE_HOST="127.0.0.1",
        TIMESCALE_PORT=str(module_settings.timescale_port),
        TIMESCALE_DB=module_settings.timescale_db,
        TIMESCALE_USER="postgres",
    )
    return env


def _line(text: str, needle: str) -> str:
    return next(x for x in text.splitlines() if needle in x)


def _cells(text: str, needle: str) -> list[str]:
    """The cells of the table line holding ``needle``."""
    return [c.strip() for c in re.split(r"[│┃]", _line(text, needle))[1:-1]]


def test_models_shows_calibrated_coverage_beside_target_and_the_baseline_that_beats_nhits(
    env, registered
):
    done = run(env, "models", "EURUSD")
    assert done.returncode == 0, done.stderr
    header = _cells(done.stdout, "reason")
    at = [header.index(c) for c in ("version", "cal80", "cal95", "best")]

    def shown(role: str) -> list[str]:
        cells = _cells(done.stdout, registered[role])
        return [cells[i] for i in at]

    assert shown("beaten") == [registered["beaten"], "76.2/80", "95.1/95", "GARCH"]
    assert shown("holds") == [registered["holds"], "79.6/80", "94.8/95", "-"]
    assert shown("old") == [registered["old"], "-", "-", "-"]  # absent, no crash


def test_a_coverage_more_than_three_points_off_its_target_is_red(db, registered):
    rows = quality.versions(db, symbols=["EURUSD"])
    console = Console(width=300, force_terminal=True, color_system="standard", record=True)
    console.print(versions_table(rows))
    text = console.export_text(styles=True)
    assert "\x1b[31m76.2/80" in text  # 3.8 points under 80
    assert "\x1b[31m95.1/95" not in text and "95.1/95" in text
    assert "\x1b[31m79.6/80" not in text and "79.6/80" in text


def test_compare_prints_every_method_on_every_score_the_winners_the_calibration_and_the_verdict(
    env, registered
):
    done = run(env, "models", "EURUSD", "--compare", "--version", registered["beaten"])
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for header in ("cov 80", "cov 95", "IS 80", "IS 95", "pinball", "width 80", "MAE", "skill"):
        assert header in text, header
    garch = _line(text, "GARCH(1,1)")
    assert garch.count("*") == 6  # the winner of all six compared scores
    assert "79.4/80 *" in garch and "0.02810 *" in garch
    assert "+0.060" in garch  # interval-score skill against the empirical random walk
    calibrated = _line(text, "NHITS calibrated")
    assert "76.2/80" in calibrated and "*" not in calibrated
    assert "56.1/80" in _line(text, "NHITS raw") and "70.1/80" in _line(text, "seasonal naive")
    assert "AutoETS not run: statsforecast: too few bars" in text
    assert "calibration: conformalized quantile regression" in text
    level80 = _line(text, "80 %")
    assert "0.200" in level80 and "0.210" in level80 and "+0.230" in level80  # mean alpha, factor
    assert "12 online updates" in text
    assert GARCH_SENTENCE in text
    assert "rMAE 1.020, no better than naive (DM p 0.41, 250 origins)" in text


def test_compare_defaults_to_the_active_version_and_shows_an_old_one_as_absent(env, registered):
    done = run(env, "models", "EURUSD", "--compare")
    assert done.returncode == 0, done.stderr
    assert registered["old"] in done.stdout and "[active]" in done.stdout
    assert "calibration: -" in done.stdout and "No probabilistic scores stored" in done.stdout
    assert "cov 80" not in done.stdout


def test_compare_json_is_the_apis_answer(env, registered, db):
    done = run(env, "models", "EURUSD", "--compare", "--version", registered["holds"], "--json")
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    expected = quality.evaluation(db, symbol="EURUSD", version=registered["holds"])
    assert answer == expected.model_dump(mode="json")
    assert answer["probabilistic"]["winners"]["interval_score_80"] == "rw_garch"
    assert answer["summary"].startswith("No baseline beats NHITS on every score")


def test_compare_refuses_another_symbols_version_and_options_without_compare(env, registered):
    done = run(env, "models", "EURUSD", "--compare", "--version", registered["goog"])
    assert done.returncode != 0 and "GOOG's" in done.stderr, done.stderr
    done = run(env, "models", "EURUSD", "--json")
    assert done.returncode != 0 and "--compare" in done.stderr
    done = run(env, "models", "--compare")
    assert done.returncode != 0 and "SYMBOL" in done.stderr
