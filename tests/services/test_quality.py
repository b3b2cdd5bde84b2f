"""A version's forecast quality read back from its stored metrics: calibrated coverage against
target, the baseline that beats NHITS on every score, the sentence, and old versions without
any of it. Versions are registered in a real PostgreSQL through the registry.

The blocks are built with the pydantic models the evaluation stores them with
(``kitrade.schemas.quality``), from numbers chosen so each scenario's verdict is known.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kitrade.errors import InvalidInputError, NotFoundError
from kitrade.schemas import (
    CalibrationSummary,
    LevelCalibration,
    ModelEvaluationOut,
    ProbabilisticReport,
    ProbScores,
    StepScores,
)
from kitrade.services import quality
from kitrade.training.registry import new_version_id, register_version

#: (coverage_80, coverage_95, interval_score_80, interval_score_95, pinball, mae) per method
GARCH_BEATS = {
    "nhits": (0.561, 0.802, 0.0412, 0.0633, 0.0101, 0.0093),
    "nhits_calibrated": (0.762, 0.951, 0.0305, 0.0451, 0.0089, 0.0093),
    "rw_empirical": (0.779, 0.940, 0.0299, 0.0460, 0.0088, 0.0090),
    "rw_garch": (0.794, 0.950, 0.0281, 0.0420, 0.0082, 0.0090),
    "seasonal_naive": (0.701, 0.902, 0.0512, 0.0701, 0.0130, 0.0121),
}
#: the winner of each score above: GARCH on all six (the random walk ties its MAE, GARCH is
#: listed first by the evaluation)
GARCH_WINNERS = {
    "coverage_80": "rw_garch",
    "coverage_95": "rw_garch",
    "interval_score_80": "rw_garch",
    "interval_score_95": "rw_garch",
    "pinball": "rw_garch",
    "mae": "rw_garch",
}
#: calibrated NHITS holds: GARCH has the lower interval score at 80 %, NHITS the rest
NHITS_HOLDS = {
    "nhits": (0.702, 0.921, 0.0331, 0.0502, 0.0091, 0.0081),
    "nhits_calibrated": (0.796, 0.948, 0.0290, 0.0410, 0.0080, 0.0081),
    "rw_empirical": (0.771, 0.939, 0.0301, 0.0462, 0.0087, 0.0090),
    "rw_garch": (0.781, 0.943, 0.0285, 0.0431, 0.0084, 0.0090),
    "auto_ets": (0.752, 0.931, 0.0322, 0.0480, 0.0090, 0.0088),
    "seasonal_naive": (0.701, 0.902, 0.0512, 0.0701, 0.0130, 0.0121),
}
NHITS_WINNERS = {
    "coverage_80": "nhits_calibrated",
    "coverage_95": "nhits_calibrated",
    "interval_score_80": "rw_garch",
    "interval_score_95": "nhits_calibrated",
    "pinball": "nhits_calibrated",
    "mae": "nhits",
}
ETS_ERROR = {"auto_ets": "statsforecast: too few bars before the first origin"}


def scores(values: tuple[float, ...], reference: tuple[float, ...] | None = None) -> ProbScores:
    """A method's scores from (cov80, cov95, IS80, IS95, pinball, MAE); skill against
    ``reference`` (the empirical random walk's)."""
    cov80, cov95, is80, is95, pinball, mae = values
    skill = {}
    if reference is not None:
        skill = {
            "interval_score_80": 1 - is80 / reference[2],
            "interval_score_95": 1 - is95 / reference[3],
            "pinball": 1 - pinball / reference[4],
        }
    return ProbScores(
        coverage_80=cov80,
        coverage_95=cov95,
        interval_score_80=is80,
        interval_score_95=is95,
        pinball=pinball,
        width_80=is80 * 0.6,
        width_95=is95 * 0.6,
        mae=mae,
        calibration={"0.025": 0.03, "0.1": 0.11, "0.5": 0.5, "0.9": 0.88, "0.975": 0.97},
        skill=skill,
        per_step=StepScores(
            coverage_80=[cov80, cov80],
            coverage_95=[cov95, None],
            interval_score_80=[is80, is80],
            interval_score_95=[is95, is95],
            pinball=[pinball, pinball],
            width_80=[is80 * 0.6, is80 * 0.6],
        ),
    )


def report(
    table: dict[str, tuple[float, ...]],
    winners: dict[str, str],
    baseline_errors: dict[str, str] | None = None,
) -> ProbabilisticReport:
    """A comparison on 250 origins of the methods in ``table``."""
    rw = table["rw_empirical"]
    return ProbabilisticReport(
        origins=250,
        calibration_origins=200,
        points=6000,
        eval_start="2024-03-01T00:00:00+00:00",
        eval_end="2024-12-31T00:00:00+00:00",
        methods={m: scores(v, rw) for m, v in table.items()},
        winners=winners,
        baseline_errors=baseline_errors or {},
    )


def calibration() -> CalibrationSummary:
    """Levels of a two-step model after a few online updates."""
    return CalibrationSummary(
        method="conformalized quantile regression + adaptive conformal inference",
        gamma=0.005,
        window=500,
        updates=12,
        through="2024-12-31T00:00:00+00:00",
        levels={
            "80": LevelCalibration(
                nominal=0.8, alpha=[0.19, 0.23], factor=[0.12, 0.34], n_scores=[200, 199]
            ),
            "95": LevelCalibration(
                nominal=0.95, alpha=[0.05, 0.04], factor=[0.08, 0.1], n_scores=[200, 199]
            ),
        },
    )


def point_metrics() -> dict[str, Any]:
    """The point evaluation's block as versions store it today."""
    return {
        "model": {"rmae": 1.02, "mase": 3.9, "coverage_80": 0.56, "coverage_95": 0.8},
        "beats_naive": False,
        "verdict": "no better than naive",
        "dm_pvalue": 0.41,
        "n_origins": 250,
    }


def quality_metrics(rep: ProbabilisticReport) -> dict[str, Any]:
    """Point metrics with the probabilistic and calibration blocks, as JSON (as stored)."""
    return {
        **point_metrics(),
        "probabilistic": rep.model_dump(mode="json"),
        "calibration": calibration().model_dump(mode="json"),
    }


def register(conn: Any, symbol: str, metrics: dict[str, Any], artifact: Path) -> str:
    """Register a candidate version of ``symbol`` with ``metrics``; its id."""
    v = register_version(
        conn,
        version=new_version_id(symbol),
        symbol=symbol,
        artifact_path=artifact,
        config={},
        metrics=metrics,
        data_start=datetime(2023, 1, 1, tzinfo=UTC),
        data_end=datetime(2024, 12, 31, tzinfo=UTC),
        n_bars=6000,
    )
    return v.version


# ------------------------------------------------------------------ pure verdicts
def test_a_baseline_better_on_every_score_is_named_and_its_sentence_says_so():
    rep = report(GARCH_BEATS, GARCH_WINNERS, ETS_ERROR)
    q = quality.model_quality({"probabilistic": rep.model_dump(mode="json")})
    assert q is not None
    assert q.beaten_by == ["rw_garch"] and q.best == "GARCH"
    assert q.summary == "On these 250 origins GARCH(1,1) bands beat NHITS on every score."
    # calibrated coverage beside its target: 76.2 misses 80 by 3.8 points, 95.1 is on target
    assert (q.coverage_80.text, q.coverage_80.miss) == ("76.2/80", True)
    assert (q.coverage_95.text, q.coverage_95.miss) == ("95.1/95", False)


def test_no_baseline_is_named_when_nhits_wins_any_score_against_it():
    rep = report(NHITS_HOLDS, NHITS_WINNERS)
    q = quality.model_quality({"probabilistic": rep.model_dump(mode="json")})
    assert q is not None and q.beaten_by == [] and q.best is None
    assert q.summary == (
        "No baseline beats NHITS on every score on these 250 origins; NHITS wins 5 of the 6 scores."
    )
    assert (q.coverage_80.text, q.coverage_80.miss) == ("79.6/80", False)


def test_every_baseline_that_beats_nhits_is_named_the_one_winning_most_scores_first():
    table = dict(GARCH_BEATS)
    table["rw_empirical"] = (0.790, 0.9495, 0.0290, 0.0440, 0.0085, 0.0091)  # beats NHITS too
    winners = {**GARCH_WINNERS, "mae": "nhits"}  # MAE: NHITS's 0.0093 is not lowest here
    table["nhits"] = (*table["nhits"][:5], 0.0089)
    rep = report(table, winners)
    assert quality.baselines_beating(rep) == ["rw_garch", "rw_empirical"]
    assert quality.summary_sentence(rep, ["rw_garch", "rw_empirical"]) == (
        "On these 250 origins GARCH(1,1) and empirical random walk bands each beat NHITS on "
        "every score."
    )


def test_a_baseline_without_a_score_nhits_has_does_not_beat_it_on_every_score():
    rep = report(GARCH_BEATS, GARCH_WINNERS)
    rep.methods["rw_garch"] = rep.methods["rw_garch"].model_copy(update={"coverage_95": None})
    assert quality.baselines_beating(rep) == []
    nhits = rep.methods["nhits_calibrated"].model_copy(update={"coverage_95": None})
    rep.methods["nhits_calibrated"] = nhits  # a score neither has is not compared
    assert quality.baselines_beating(rep) == ["rw_garch"]


def test_coverage_exactly_three_points_off_is_not_a_miss():
    table = {**NHITS_HOLDS, "nhits_calibrated": (0.77, 0.98, 0.029, 0.041, 0.008, 0.0081)}
    q = quality.model_quality({"probabilistic": report(table, NHITS_WINNERS).model_dump()})
    assert q is not None
    assert (q.coverage_80.text, q.coverage_80.miss) == ("77.0/80", False)
    assert (q.coverage_95.text, q.coverage_95.miss) == ("98.0/95", False)


def test_versions_without_the_blocks_or_with_unreadable_ones_read_as_absent():
    assert quality.model_quality(point_metrics()) is None
    assert quality.model_quality({}) is None
    assert quality.read_calibration(point_metrics()) is None
    assert quality.model_quality({"probabilistic": {"methods": "not a table"}}) is None


# ------------------------------------------------------------- from the registry
@pytest.fixture
def registered(db, tmp_path) -> dict[str, str]:
    """EURUSD: an active old version without the blocks, a GARCH-beaten candidate and an
    NHITS-holds candidate; GOOG: one version."""
    artifact = tmp_path / "model"
    artifact.mkdir()
    with db.connection() as conn:
        conn.execute("TRUNCATE model_versions")
        old = register(conn, "EURUSD", point_metrics(), artifact)
        conn.execute("UPDATE model_versions SET status = 'active' WHERE version = %s", (old,))
        beaten = register(
            conn, "EURUSD", quality_metrics(report(GARCH_BEATS, GARCH_WINNERS, ETS_ERROR)), artifact
        )
        holds = register(
            conn, "EURUSD", quality_metrics(report(NHITS_HOLDS, NHITS_WINNERS)), artifact
        )
        goog = register(conn, "GOOG", point_metrics(), artifact)
    return {"old": old, "beaten": beaten, "holds": holds, "goog": goog}


def test_evaluation_of_a_version_gives_every_method_the_calibration_and_the_sentence(
    db, registered
):
    ev = quality.evaluation(db, symbol="EURUSD", version=registered["beaten"])
    assert isinstance(ev, ModelEvaluationOut)
    assert (ev.symbol, ev.version, ev.status) == ("EURUSD", registered["beaten"], "candidate")
    assert ev.probabilistic == report(GARCH_BEATS, GARCH_WINNERS, ETS_ERROR)
    assert ev.calibration == calibration()
    assert list(ev.labels) == [
        "nhits", "nhits_calibrated", "rw_empirical", "rw_garch", "seasonal_naive", "auto_ets"
    ]  # fmt: skip
    assert ev.labels["rw_garch"] == "GARCH(1,1)"
    assert ev.summary == "On these 250 origins GARCH(1,1) bands beat NHITS on every score."
    assert ev.point.rmae == 1.02 and ev.point.verdict == "no better than naive"
    assert ev.point.dm_pvalue == 0.41 and ev.point.n_origins == 250


def test_evaluation_defaults_to_the_active_version_and_an_old_one_reads_as_absent(db, registered):
    ev = quality.evaluation(db, symbol="EURUSD")
    assert (ev.version, ev.status) == (registered["old"], "active")
    assert ev.probabilistic is None and ev.calibration is None and ev.quality is None
    assert ev.labels == {} and ev.summary.startswith("No probabilistic scores stored")
    assert ev.point.rmae == 1.02


def test_evaluation_of_an_unknown_symbol_or_another_symbols_version_is_not_found(db, registered):
    with pytest.raises(NotFoundError, match="NOPE: no active model version"):
        quality.evaluation(db, symbol="NOPE")
    with pytest.raises(NotFoundError, match="GOOG's"):
        quality.evaluation(db, symbol="EURUSD", version=registered["goog"])
    with pytest.raises(NotFoundError, match="not found"):
        quality.evaluation(db, symbol="EURUSD", version="EURUSD-20200101T000000-abcdef")
    with pytest.raises(InvalidInputError):
        quality.evaluation(db, symbol="EURUSD", version="no-such-id")
    with pytest.raises(NotFoundError, match=f"e.g. {registered['goog']}"):  # a candidate only
        quality.evaluation(db, symbol="GOOG")


def test_listed_versions_carry_their_band_quality_and_old_ones_none(db, registered):
    by = {v.version: v for v in quality.versions(db, symbols=["EURUSD"])}
    assert set(by) == {registered["old"], registered["beaten"], registered["holds"]}
    assert by[registered["old"]].quality is None
    beaten = by[registered["beaten"]].quality
    assert beaten is not None and beaten.best == "GARCH" and beaten.coverage_80.miss is True
    holds = by[registered["holds"]].quality
    assert holds is not None and holds.best is None and holds.coverage_95.text == "94.8/95"
    assert by[registered["beaten"]].metrics["probabilistic"]["origins"] == 250  # row kept whole
