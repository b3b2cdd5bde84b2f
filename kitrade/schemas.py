"""Request and response models shared by the data layer, deployments, client and CLI.

Inputs are strict (``extra="forbid"``, validated patterns); outputs are plain.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from kitrade.timeframes import Timeframe

__all__ = [
    "SYMBOL_PATTERN",
    "AssetClass",
    "Bar",
    "Event",
    "Forecast",
    "ForecastPoint",
    "Strategy",
    "StrategySpec",
    "StrategyUpdate",
    "Symbol",
    "SymbolIn",
    "SymbolName",
    "SymbolUpdate",
    "SyncReport",
    "SyncState",
    "SyncSymbolResult",
    "Timeframe",
    "validate_symbol",
]

SYMBOL_PATTERN = r"^[A-Z0-9._-]{1,20}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
SymbolName = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
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
    active: bool = True


class SymbolUpdate(_In):
    """Fields of a symbol to change; unset ones stay."""

    timeframe: Timeframe | None = None
    asset_class: AssetClass | None = None
    description: str | None = Field(None, max_length=500)
    source: Literal["sample", "files", "http", "manual"] | None = None
    active: bool | None = None


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


class StrategySpec(_In):
    """A strategy: which symbols, which timeframe, which parameters (validated JSON)."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")]
    symbols: list[SymbolName] = Field(..., min_length=1, max_length=100)
    timeframe: Timeframe = "H1"
    parameters: dict[str, ParamValue] = Field(default_factory=dict)
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
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("symbols: expected each symbol once")
        return value


class StrategyUpdate(_In):
    """Fields of a strategy to change."""

    symbols: list[SymbolName] | None = Field(None, min_length=1, max_length=100)
    timeframe: Timeframe | None = None
    parameters: dict[str, ParamValue] | None = None
    description: str | None = Field(None, max_length=2000)

    _param_names = field_validator("parameters")(StrategySpec._param_names.__func__)  # type: ignore[attr-defined]


class Strategy(BaseModel):
    """A stored strategy."""

    id: int
    name: str
    symbols: list[str]
    timeframe: str
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
    mase: float | None = None
    beats_naive: bool | None = None
    cached: bool = False
