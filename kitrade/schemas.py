"""Request and response models shared by the data layer, deployments, client and CLI.

Inputs are strict (``extra="forbid"``, validated patterns); outputs are plain.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from kitrade.timeframes import Timeframe

__all__ = [
    "DOC_ID_PATTERN",
    "PARAMETER_ONLY",
    "STRATEGY_NAME_PATTERN",
    "SYMBOL_PATTERN",
    "VERSION_PATTERN",
    "AnalysisAnswerOut",
    "AssetClass",
    "BacktestCosts",
    "BacktestDetail",
    "BacktestRequest",
    "BacktestSpec",
    "BacktestStarted",
    "BacktestSummary",
    "Bar",
    "BarOut",
    "CalendarDate",
    "ErrorBody",
    "Event",
    "Forecast",
    "ForecastPoint",
    "Health",
    "IsoDateTime",
    "KnowledgeAdded",
    "KnowledgeDeleted",
    "KnowledgeDoc",
    "KnowledgeDocument",
    "KnowledgePassage",
    "KnowledgeUrl",
    "ModelVersionOut",
    "PromoteBody",
    "RollbackBody",
    "RunProgress",
    "ScoreSummaryOut",
    "Strategy",
    "StrategyDeleted",
    "StrategyKind",
    "StrategySpec",
    "StrategyUpdate",
    "Symbol",
    "SymbolDeleted",
    "SymbolIn",
    "SymbolName",
    "SymbolUpdate",
    "SyncReport",
    "SyncState",
    "SyncSymbolResult",
    "Timeframe",
    "TrainingReport",
    "TrainingStarted",
    "VersionId",
    "validate_symbol",
    "version_symbol",
]

SYMBOL_PATTERN = r"^[A-Z0-9._-]{1,20}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
SymbolName = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
#: a model version id: ``<SYMBOL>-<yyyymmddThhmmss>-<6 hex>`` (as the registry writes them)
VERSION_PATTERN = r"^[A-Z0-9._-]{1,20}-\d{8}T\d{6}-[0-9a-f]{6}$"
VersionId = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
_VERSION_TAIL = len("-yyyymmddThhmmss-abcdef")


def version_symbol(version: str) -> str:
    """The symbol a well-formed version id belongs to (``EURUSD-20240101T000000-abcdef``)."""
    return version[:-_VERSION_TAIL]


#: a knowledge document id (no path tricks)
DOC_ID_PATTERN = r"^[A-Za-z0-9._-]{1,80}$"
STRATEGY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"
AssetClass = Literal["fx", "stock", "crypto", "index", "commodity", "other"]
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` if it matches ``SYMBOL_PATTERN``, else raise InvalidInputError."""
    from kitrade.errors import InvalidInputError

    if not isinstance(symbol, str) or not _SYMBOL_RE.fullmatch(symbol):
        raise InvalidInputError(
            f"symbol: expected 1-20 of A-Z 0-9 . _ - (e.g. EURUSD), was {symbol!r}"
        )
    return symbol


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SymbolIn(_In):
    """A symbol to create."""

    symbol: SymbolName
    timeframe: Timeframe = "H1"
    asset_class: AssetClass = "other"
    description: str = Field("", max_length=500)
    source: Literal["sample", "files", "http", "manual"] = "manual"
    active: StrictBool = True


class SymbolUpdate(_In):
    """Fields of a symbol to change; unset ones stay."""

    timeframe: Timeframe | None = None
    asset_class: AssetClass | None = None
    description: str | None = Field(None, max_length=500)
    source: Literal["sample", "files", "http", "manual"] | None = None
    active: StrictBool | None = None


class Symbol(BaseModel):
    """A stored symbol with its bar summary."""

    symbol: str
    timeframe: str
    asset_class: str
    description: str
    source: str
    active: bool
    created_at: datetime
    updated_at: datetime
    bars: int = 0
    first_bar: datetime | None = None
    last_bar: datetime | None = None
    last_close: float | None = None


ParamValue = str | int | float | bool | None | list[str | int | float | bool]
#: a strategy parameter's name: an identifier
ParamName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
#: a strategy's parameters: at most 100, named by identifiers, scalar or list values
Parameters = Annotated[
    dict[ParamName, ParamValue],
    Field(max_length=100, json_schema_extra={"additionalProperties": False}),
]
#: a strategy's symbols: 1 to 100, each once
StrategySymbols = Annotated[
    list[SymbolName], Field(min_length=1, max_length=100, json_schema_extra={"uniqueItems": True})
]


#: A strategy's kind: one of the backtest kinds (``kitrade.backtest.strategies.STRATEGY_KINDS``,
#: whose parameters are checked against the kind), or ``"parameters"``: parameter-only, the
#: kind of every strategy stored before kinds existed (free parameters, cannot be backtested).
StrategyKind = Literal[
    "parameters",
    "forecast_threshold",
    "forecast_interval",
    "buy_and_hold",
    "sma_cross",
    "naive_direction",
]
PARAMETER_ONLY: Literal["parameters"] = "parameters"


class StrategySpec(_In):
    """A strategy: which symbols, which timeframe, which kind and parameters (validated JSON).

    A strategy of a backtest kind has its parameters checked against that kind; the
    default kind ``"parameters"`` keeps free parameters (what older clients send).
    """

    name: Annotated[str, StringConstraints(pattern=STRATEGY_NAME_PATTERN)]
    symbols: StrategySymbols
    timeframe: Timeframe = "H1"
    kind: StrategyKind = PARAMETER_ONLY
    parameters: Parameters = Field(default_factory=dict)
    description: str = Field("", max_length=2000)

    @field_validator("parameters")
    @classmethod
    def _param_names(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:  # an update that leaves the parameters alone
            return value
        if len(value) > 100:
            raise ValueError(f"expected at most 100 parameters, was {len(value)}")
        for key in value:
            if not _PARAM_NAME.fullmatch(key):
                raise ValueError(f"parameter names: expected an identifier, was {key!r}")
        return value

    @field_validator("symbols")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("symbols: expected each symbol once")
        return value


class StrategyUpdate(_In):
    """Fields of a strategy to change."""

    symbols: StrategySymbols | None = None
    timeframe: Timeframe | None = None
    kind: StrategyKind | None = None
    parameters: Parameters | None = None
    description: str | None = Field(None, max_length=2000)

    _param_names = field_validator("parameters")(StrategySpec._param_names.__func__)  # type: ignore[attr-defined]
    _unique = field_validator("symbols")(StrategySpec._unique.__func__)  # type: ignore[attr-defined]


class Strategy(BaseModel):
    """A stored strategy."""

    id: int
    name: str
    symbols: list[str]
    timeframe: str
    kind: str = PARAMETER_ONLY
    parameters: dict[str, Any]
    description: str
    created_at: datetime
    updated_at: datetime


class Bar(BaseModel):
    """One OHLCV bar."""

    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class SyncState(BaseModel):
    """Per-symbol sync state."""

    symbol: str
    source: str
    last_bar: datetime | None
    last_run: datetime | None
    status: str
    error: str | None
    rows_last_run: int


class SyncSymbolResult(BaseModel):
    """What a sync did for one symbol."""

    symbol: str
    status: Literal["ok", "failed", "up_to_date"]
    rows: int = 0
    new_bars: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    error: str | None = None


class SyncReport(BaseModel):
    """What a sync did overall."""

    source: str
    started_at: datetime
    finished_at: datetime
    results: list[SyncSymbolResult]

    @property
    def ok(self) -> bool:
        """True when no symbol failed."""
        return all(r.status != "failed" for r in self.results)


class Event(BaseModel):
    """A recorded event (e.g. ``bars_ingested``)."""

    id: int
    kind: str
    symbol: str | None
    payload: dict[str, Any]
    created_at: datetime


class ForecastPoint(BaseModel):
    """One forecast step with its 80 % and 95 % intervals."""

    ds: datetime
    mean: float
    lo_80: float
    hi_80: float
    lo_95: float
    hi_95: float


class Forecast(BaseModel):
    """A forecast answer."""

    symbol: str
    version: str
    horizon: int
    max_horizon: int
    last_bar: datetime
    generated_at: datetime
    points: list[ForecastPoint]
    rmae: float | None = Field(
        None, description="the model's MAE / naive's MAE over its evaluation (1.0 = naive)"
    )
    beats_naive: bool | None = Field(
        None, description="a Diebold-Mariano test at 5 % says the model beats naive"
    )
    verdict: str | None = Field(None, description='"beats naive" or "no better than naive"')
    n_origins: int | None = Field(None, description="rolling origins behind the evaluation")
    cached: bool = False


# ------------------------------------------------------------------ HTTP contract
# Request bodies and query types of the gateway, and the shapes of its answers. The
# answer models document what the layers below return and allow extra fields, so the
# response model never drops a field those layers add.


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


# ---------------------------------------------------------------------- backtests
#: a backtest kind (a strategy kind that can be executed; not ``"parameters"``)
BacktestKind = Literal[
    "forecast_threshold", "forecast_interval", "buy_and_hold", "sma_cross", "naive_direction"
]
_NonNeg = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
_Positive = Annotated[float, Field(gt=0, le=1e15, allow_inf_nan=False)]
#: a per-symbol cost: a symbol, or ``*`` for every symbol
_CostKey = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Z0-9._-]{1,20})$")]
_PerSymbol = Annotated[
    dict[_CostKey, Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]],
    Field(max_length=100, json_schema_extra={"additionalProperties": False}),
]
_Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


def _utc(value: datetime | None) -> datetime | None:
    """A date-time without an offset is UTC."""
    from datetime import UTC

    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class BacktestSpec(_In):
    """An inline strategy: a backtest kind and its parameters."""

    kind: BacktestKind
    params: Parameters = Field(default_factory=dict)


class BacktestCosts(_In):
    """Execution costs and sizing of a backtest (unset fields keep the engine's defaults)."""

    commission: _Fraction | None = Field(
        None, description="relative commission per fill (0.0005 = 5 bp; default 0.0005)"
    )
    fixed: _NonNeg | None = Field(None, description="fixed fee per fill in account currency")
    spread: _Fraction | _PerSymbol | None = Field(
        None, description="full bid-ask spread as a fraction of the price; by symbol or '*'"
    )
    slippage: _Fraction | _PerSymbol | None = Field(
        None, description="adverse price move per fill as a fraction; by symbol or '*'"
    )
    max_gross: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | None = Field(
        None, description="the largest gross exposure as a multiple of equity (default 1)"
    )
    init_cash: _Positive | None = Field(None, description="starting equity (default 100000)")


_REQUEST_SHAPES: dict[str, Any] = {
    "oneOf": [
        {"required": ["strategy"], "not": {"required": ["spec"]}},
        {"required": ["spec", "symbols", "timeframe"], "not": {"required": ["strategy"]}},
    ]
}


class BacktestRequest(_In):
    """A backtest to run: a stored strategy by name, or an inline ``spec`` with its symbols
    and timeframe; the period, the walk-forward folds, costs and NHITS overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_REQUEST_SHAPES)

    # Not nullable: give one of the two keys, not a null (the document's ``oneOf`` says so).
    strategy: (
        Annotated[str, StringConstraints(pattern=STRATEGY_NAME_PATTERN)] | SkipJsonSchema[None]
    ) = Field(None, description="a stored strategy of a backtest kind")
    spec: BacktestSpec | SkipJsonSchema[None] = Field(
        None, description="an inline strategy instead"
    )
    symbols: StrategySymbols | None = Field(None, description="default: the strategy's")
    timeframe: Timeframe | None = Field(None, description="default: the strategy's")
    start: Annotated[IsoDateTime | None, AfterValidator(_utc)] = Field(
        None, description="first decision bar (default: as early as the first fold can train)"
    )
    end: Annotated[IsoDateTime | None, AfterValidator(_utc)] = Field(
        None, description="last decision bar, inclusive (default: the last stored bar)"
    )
    folds: int = Field(4, ge=1, le=100, description="walk-forward folds per symbol")
    costs: BacktestCosts | None = None
    model: Parameters | None = Field(
        None,
        description="NHITS configuration fields for the fold models (max_steps, input_size, "
        "horizon, mlp_units, ...); unknown fields or values out of range are refused",
    )

    @field_validator("strategy", "spec", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("expected a value (leave the key out instead of null)")
        return value

    @field_validator("symbols")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("symbols: expected each symbol once")
        return value

    @model_validator(mode="after")
    def _one_strategy(self) -> BacktestRequest:
        """Refuse neither or both of ``strategy``/``spec``, and a spec without symbols."""
        if (self.strategy is None) == (self.spec is None):
            raise ValueError("expected either a strategy name or an inline spec, not both")
        if self.spec is not None and (self.symbols is None or self.timeframe is None):
            raise ValueError("an inline spec needs symbols and a timeframe")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"period: expected start <= end, was {self.start} > {self.end}")
        return self

    def service_args(self) -> dict[str, Any]:
        """The keyword arguments of ``services.backtests.create_backtest``."""
        return {
            "strategy": self.strategy,
            "spec": None if self.spec is None else self.spec.model_dump(),
            "symbols": self.symbols,
            "timeframe": self.timeframe,
            "start": self.start,
            "end": self.end,
            "n_folds": self.folds,
            "costs": None if self.costs is None else self.costs.model_dump(exclude_none=True),
            "model_overrides": self.model,
        }


class BacktestStarted(BaseModel):
    """A backtest recorded and started on the cluster."""

    id: int
    status: str
    links: dict[str, str] = Field(..., description="where to follow it")


class BacktestSummary(_Out):
    """A backtest without its curves: what, over which period, how far, and its metrics."""

    id: int
    strategy_name: str | None
    spec: dict[str, Any]
    symbols: list[str]
    timeframe: str
    period_start: datetime | None
    period_end: datetime | None
    n_folds: int
    status: Literal["queued", "running", "failed", "done"]
    progress: float = Field(..., description="0..1")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    metrics: dict[str, Any] | None = Field(
        None, description="strategy, buy_and_hold, naive (when done)"
    )

    @classmethod
    def from_record(cls, record: Any) -> Self:
        """The answer for a stored backtest (``kitrade.data.backtests.BacktestRecord``)."""
        names = set(BacktestSummary.model_fields) - {"metrics"}
        values = {k: getattr(record, k) for k in names}
        result = record.result or {}
        extra = {
            k: result.get(k) for k in set(cls.model_fields) - set(BacktestSummary.model_fields)
        }
        if "costs" in extra:  # the engine's costs once done, the request's before
            extra["costs"] = result.get("costs") or record.costs
        if "model_overrides" in extra:
            extra["model_overrides"] = record.model_overrides
        return cls.model_validate(values | extra | {"metrics": result.get("metrics")})


class BacktestDetail(BacktestSummary):
    """A backtest with its result (the result fields are null until it is done).

    ``equity``, ``benchmark_equity`` and ``drawdown`` are ``[[iso time, value], ...]``;
    ``folds`` one row per (symbol, fold); ``lookahead_checks`` the point-in-time checks.
    """

    costs: dict[str, Any]
    model_overrides: dict[str, Any]
    lag_test: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    equity: list[list[Any]] | None = None
    benchmark_equity: list[list[Any]] | None = None
    drawdown: list[list[Any]] | None = None
    trades: list[dict[str, Any]] | None = None
    folds: list[dict[str, Any]] | None = None
    lookahead_checks: list[dict[str, Any]] | None = None
    forecast_folds: dict[str, Any] | None = None
