"""The HTTP contract: the gateway's request bodies, query types and answers.

The answer models document what the layers below return and allow extra
fields, so a response model never drops a field those layers add.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from kitrade.schemas.domain import SymbolName, VersionId
from kitrade.schemas.quality import CalibrationSummary, ProbabilisticReport


def _calendar_date(value: str) -> str:
    date.fromisoformat(value)  # ValueError -> 422 with pydantic's message
    return value


#: a calendar date, ``YYYY-MM-DD``
CalendarDate = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$"),
    AfterValidator(_calendar_date),
    WithJsonSchema({"type": "string", "format": "date"}),
]

_ISO_START = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_only(value: Any) -> Any:
    """Refuse what pydantic would read as a Unix time (``0.5``, ``1700000000``)."""
    if not (isinstance(value, str) and _ISO_START.match(value)):
        raise ValueError(
            f"expected an ISO 8601 date or date-time (2024-01-31T12:00:00Z), was {value!r}"
        )
    return value


#: an ISO 8601 date-time (or date, read as its midnight); UTC when no offset is given
IsoDateTime = Annotated[
    datetime,
    BeforeValidator(_iso_only),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
            ]
        }
    ),
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """Every error answer: the error class and a message saying what was expected."""

    error: str = Field(..., examples=["InvalidInputError"])
    message: str = Field(..., examples=["symbol: expected 1-20 of A-Z 0-9 . _ - , was 'x y'"])


class PromoteBody(BaseModel):
    """Which version to activate."""

    version: VersionId


class RollbackBody(BaseModel):
    """Optional target of a rollback."""

    to_version: VersionId | None = None


class KnowledgeDoc(BaseModel):
    """A document to add to the knowledge base."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=200_000)
    source: str = Field(..., min_length=1, max_length=300)
    title: str | None = Field(None, max_length=300)
    symbols: list[SymbolName] | None = Field(None, max_length=50)
    date: CalendarDate | None = None


#: http(s), a host (DNS labels of 1-63 characters, or a bracketed IPv6 address), an
#: optional port, then anything
_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?"
    r"|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?([/?#][^\s]*)?$"
)


class KnowledgeUrl(BaseModel):
    """A document to fetch from a public URL and add to the knowledge base."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        ...,
        min_length=8,
        max_length=2000,
        pattern=_URL_PATTERN,
        description="an http(s) URL of a public host named in ASCII (IDNA hosts in their "
        "xn-- form); loopback, private and link-local addresses are refused, redirects "
        "included",
    )
    title: str | None = Field(None, max_length=300)
    symbols: list[SymbolName] | None = Field(None, max_length=50)
    date: CalendarDate | None = None


class TrainingStarted(BaseModel):
    """A training run started in the background."""

    run_id: str
    status: Literal["started"]
    progress: str = Field(..., description="where to follow it")


class TrainingReport(_Out):
    """What a foreground training run did, per symbol."""

    run_id: str
    status: str
    results: list[dict[str, Any]]
    seconds: float


class RunProgress(_Out):
    """A training run's progress (``run_id`` null when there was no run yet)."""

    run_id: str | None
    status: str | None = None
    symbols: list[dict[str, Any]] = Field(default_factory=list)
    percent: float = 0.0
    eta_s: float | None = None


#: A band's coverage further than this from its target misses it (issue 19's band rule).
COVERAGE_TOLERANCE = 0.03


class BandCoverage(BaseModel):
    """Calibrated NHITS's coverage at one band level, beside its target."""

    target: float = Field(..., description="nominal coverage", examples=[0.8])
    coverage: float | None = Field(
        ..., description="share of actuals inside the calibrated band on the scored origins"
    )
    miss: bool | None = Field(
        ..., description="more than 3 points from the target (null: no coverage stored)"
    )
    text: str = Field(..., description="coverage beside target in percent", examples=["79.6/80"])

    @classmethod
    def of(cls, coverage: float | None, target: float) -> BandCoverage:
        """``coverage`` judged against ``target``: a miss is more than
        ``COVERAGE_TOLERANCE`` away (rounded to a thousandth of a point, so that 0.77
        against 0.80 is not a floating-point miss)."""
        pct = f"{target * 100:.0f}"
        if coverage is None:
            return cls(target=target, coverage=None, miss=None, text=f"-/{pct}")
        miss = round(abs(coverage - target) * 100, 3) > COVERAGE_TOLERANCE * 100
        return cls(target=target, coverage=coverage, miss=miss, text=f"{coverage * 100:.1f}/{pct}")


class ModelQuality(BaseModel):
    """A version's headline band quality: calibrated coverage against its targets, and the
    baselines (if any) that beat NHITS on every score."""

    coverage_80: BandCoverage
    coverage_95: BandCoverage
    beaten_by: list[str] = Field(
        ...,
        description="baselines better than calibrated NHITS on every compared score, the one "
        "winning the most scores first",
        examples=[["rw_garch"]],
    )
    best: str | None = Field(
        ..., description="short name of the first of `beaten_by`", examples=["GARCH"]
    )
    summary: str = Field(
        ..., examples=["On these 250 origins GARCH(1,1) bands beat NHITS on every score."]
    )


class ModelVersionOut(_Out):
    """One registered model version with its metrics, its scope and its group."""

    version: str
    symbol: str
    status: str
    metrics: dict[str, Any]
    scope: Literal["symbol", "shared"] = Field(
        "symbol",
        description="`symbol`: the symbol's own model; `shared`: one model of a group of symbols.",
    )
    group: str | None = Field(
        None,
        description="The shared model's group (an explicit group or a timeframe); null "
        "for an own model.",
        examples=["H1"],
    )
    quality: ModelQuality | None = Field(
        None,
        description="Headline band quality from `metrics.probabilistic` (listings only); null "
        "for a version evaluated before band scores were stored.",
    )


class PointSummary(BaseModel):
    """The point forecast against naive on the evaluation's origins (null: not stored)."""

    rmae: float | None = Field(..., description="MAE / naive's MAE on the same points")
    mase: float | None
    verdict: str | None = Field(..., examples=["no better than naive"])
    dm_pvalue: float | None = Field(..., description="Diebold-Mariano p-value against naive")
    n_origins: int | None


class ModelEvaluationOut(BaseModel):
    """A version's forecast quality: point verdict, every method's band scores on the same
    origins with the winner per score, how its bands are calibrated, and the plain sentence.

    `probabilistic`, `calibration` and `quality` are null for a version evaluated before
    they were stored.
    """

    symbol: str
    version: str
    status: str
    point: PointSummary
    probabilistic: ProbabilisticReport | None
    calibration: CalibrationSummary | None
    quality: ModelQuality | None
    labels: dict[str, str] = Field(
        ...,
        description="display name of each method of `probabilistic.methods` in table order, "
        "then of each baseline in `probabilistic.baseline_errors`",
    )
    summary: str = Field(
        ..., examples=["On these 250 origins GARCH(1,1) bands beat NHITS on every score."]
    )


class BarOut(BaseModel):
    """One OHLCV bar as the API returns it (``ts`` ISO 8601)."""

    model_config = ConfigDict(extra="allow")

    ts: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class SymbolDeleted(BaseModel):
    """A removed symbol."""

    symbol: str
    bars_deleted: int


class StrategyDeleted(BaseModel):
    """A removed strategy."""

    deleted: str


class AnalysisAnswerOut(_Out):
    """A grounded answer: recommendation, confidence, rationale, risks, sources, provenance."""

    symbol: str
    question: str
    recommendation: Literal["buy", "sell", "hold"]
    confidence: float
    rationale: str
    backend: str
    sources: list[dict[str, Any]] = Field(default_factory=list)


class ScoreSummaryOut(_Out):
    """Scored answers against always-hold and the forecast-direction signal."""

    symbol: str | None
    scored: int
    pending: int
    newly_scored: int = 0
    verdict: str


class KnowledgeAdded(_Out):
    """A stored knowledge document."""

    doc_id: str


class KnowledgeDocument(_Out):
    """A knowledge document."""

    doc_id: str


class KnowledgePassage(_Out):
    """A retrieved knowledge chunk."""

    id: str
    text: str


class KnowledgeDeleted(BaseModel):
    """A deleted knowledge document."""

    doc_id: str
    chunks_deleted: int


class Health(BaseModel):
    """One entry per component; ``degraded`` (HTTP 503) when a required one is down."""

    status: Literal["ok", "degraded"]
    components: dict[str, dict[str, Any]]
    uptime_s: float
