"""Domain models: symbols, strategies, bars, sync state, events and forecasts.

Inputs are strict (``extra="forbid"``, validated patterns); outputs are plain.
The patterns here (symbol, version, document id, strategy name) are the one
definition every layer validates against.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)

from kitrade.schemas.quality import CalibrationSummary
from kitrade.timeframes import Timeframe

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
    coverage_80: float | None = Field(
        None,
        description="share of actuals inside the calibrated 80 % band on the evaluation's "
        "scoring origins (target 0.80)",
    )
    coverage_95: float | None = Field(None, description="the same for the 95 % band (target 0.95)")
    interval_score_ratio: float | None = Field(
        None,
        description="calibrated NHITS's 80 % interval score over the best baseline's on the "
        "same origins (below 1: sharper for its coverage)",
    )
    best_baseline: str | None = Field(
        None, description="the baseline with the lowest 80 % interval score on those origins"
    )
    baseline_beats_model: str | None = Field(
        None,
        description="a baseline that beats calibrated NHITS on every compared score, when one "
        "does (its name)",
    )
    bands: Literal["calibrated", "raw"] = Field(
        "calibrated",
        description="`calibrated`: the model's bands conformally calibrated (see "
        "`calibration`); `raw`: as the network emitted them (`?bands=raw`)",
    )
    calibration: CalibrationSummary | None = Field(
        None,
        description="how the bands are calibrated: method, scores per step, current levels; "
        "null for a model trained before calibration",
    )
    cached: bool = False


class ServedForecast(Forecast):
    """A forecast as the forecast deployment hands it to the gateway: the answer plus the
    raw bands, which the gateway answers instead for ``?bands=raw``."""

    raw_points: list[ForecastPoint] | None = None
