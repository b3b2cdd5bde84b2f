"""Forecast quality as data: probabilistic scores per method, the comparison, the calibration.

What a rolling-origin evaluation stores beside its point metrics (``metrics["probabilistic"]``
and ``metrics["calibration"]`` of a model version) and what ``GET
/api/v1/models/{symbol}/evaluation``, ``kitrade models SYMBOL --compare``, the forecast answer
and the dashboard read back. Every method (NHITS raw, NHITS calibrated, each baseline) is
scored on the same origins.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "COMPARED_SCORES",
    "LOWER_IS_BETTER",
    "NOMINAL",
    "QUANTILES",
    "CalibrationSummary",
    "LevelCalibration",
    "ProbScores",
    "ProbabilisticReport",
    "StepScores",
]

#: The quantiles a forecast emits (median and the 80 / 95 % bands' ends), as calibration keys.
QUANTILES: tuple[float, ...] = (0.025, 0.1, 0.5, 0.9, 0.975)

#: Scores where lower is better; coverage is judged by its distance from nominal instead.
LOWER_IS_BETTER: tuple[str, ...] = (
    "interval_score_80",
    "interval_score_95",
    "pinball",
    "mae",
)

#: The target of each coverage score.
NOMINAL: dict[str, float] = {"coverage_80": 0.8, "coverage_95": 0.95}

#: The scores ``ProbabilisticReport.winners`` names a winner for.
COMPARED_SCORES: tuple[str, ...] = (
    "coverage_80",
    "coverage_95",
    *LOWER_IS_BETTER,
)


class StepScores(BaseModel):
    """Scores per forecast step, columnar: element ``j`` is step ``j + 1``."""

    model_config = ConfigDict(extra="forbid")

    coverage_80: list[float | None]
    coverage_95: list[float | None]
    interval_score_80: list[float | None]
    interval_score_95: list[float | None]
    pinball: list[float | None]
    width_80: list[float | None]


class ProbScores(BaseModel):
    """One method's point and probabilistic scores over the compared origins.

    Interval (Winkler) score of a ``1 - a`` band: its width plus ``2 / a`` times how far the
    actual fell outside it (lower is better; a band that covers nominally and is narrow
    wins). Pinball: the quantile loss averaged over ``QUANTILES`` (a CRPS approximation).
    Skill: ``1 - score / score of the random walk with empirical bands`` on the same points
    (above 0: better than that random walk).
    """

    model_config = ConfigDict(extra="forbid")

    coverage_80: float | None
    coverage_95: float | None
    interval_score_80: float | None
    interval_score_95: float | None
    pinball: float | None
    width_80: float | None
    width_95: float | None
    mae: float | None
    calibration: dict[str, float | None] = Field(
        description="share of actuals below each emitted quantile (key: the quantile)"
    )
    skill: dict[str, float | None] = Field(
        default_factory=dict,
        description="1 - score / rw_empirical's score, for interval scores and pinball",
    )
    per_step: StepScores


class ProbabilisticReport(BaseModel):
    """Every method's scores on the same origins, and the winner of each score.

    The origins are the evaluation's scoring part: the ones after its calibration part, so
    NHITS's calibrated bands are scored out of sample like every other method.
    """

    model_config = ConfigDict(extra="forbid")

    origins: int = Field(description="forecast origins every method is scored on")
    calibration_origins: int = Field(description="earlier origins that only calibrate")
    points: int
    eval_start: str
    eval_end: str
    methods: dict[str, ProbScores]
    winners: dict[str, str] = Field(
        description="score -> method; coverage: closest to nominal, others: lowest"
    )
    baseline_errors: dict[str, str] = Field(
        default_factory=dict, description="baselines that could not run here, and why"
    )


class LevelCalibration(BaseModel):
    """The calibration of one band level: per step, its current miscoverage level and factor."""

    model_config = ConfigDict(extra="forbid")

    nominal: float = Field(description="target coverage, 0.8 or 0.95")
    alpha: list[float] = Field(description="per step: current miscoverage level (ACI)")
    factor: list[float] = Field(
        description="per step: the band is widened by factor x its half-width on each side "
        "(negative: narrowed)"
    )
    n_scores: list[int] = Field(description="per step: conformity scores behind the factor")


class CalibrationSummary(BaseModel):
    """How served bands are calibrated: method, data behind it, current levels."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(
        description="conformalized quantile regression, kept calibrated online by adaptive "
        "conformal inference (Gibbs & Candes 2021)"
    )
    gamma: float = Field(description="ACI step size")
    window: int = Field(description="most recent scores kept per step")
    updates: int = Field(
        0,
        description="outcomes that moved the levels: in the evaluation's scoring part, then "
        "online as bars closed",
    )
    through: str | None = Field(None, description="last bar whose outcome was taken in")
    levels: dict[str, LevelCalibration] = Field(description='"80" and "95"')
