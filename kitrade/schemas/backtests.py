"""Backtest requests and answers: inline strategies, costs, the run's summary and detail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from kitrade.schemas.domain import (
    STRATEGY_NAME_PATTERN,
    Parameters,
    StrategySymbols,
    _In,
)
from kitrade.schemas.http import IsoDateTime, _Out
from kitrade.timeframes import Timeframe

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
    """Execution costs and sizing of a backtest (unset fields keep the engine's defaults).

    A per-symbol cost is an object of symbol -> value with ``*`` for every other symbol;
    symbols it leaves out keep the default, and symbols that are not in the backtest are
    refused (422)."""

    commission: _Fraction | _PerSymbol | None = Field(
        None,
        description="relative commission per fill (0.0005 = 5 bp); a number for every symbol "
        "or by symbol/'*'. Default by the symbol's asset class: fx 0.00002 (0.2 bp), crypto "
        "0.001 (10 bp), stock and other 0.0005 (5 bp), index and commodity 0.0001 (1 bp)",
    )
    fixed: _NonNeg | None = Field(None, description="fixed fee per fill in account currency")
    spread: _Fraction | _PerSymbol | None = Field(
        None,
        description="full bid-ask spread as a fraction of the price (default 0.0002); "
        "by symbol or '*'",
    )
    slippage: _Fraction | _PerSymbol | None = Field(
        None,
        description="adverse price move per fill as a fraction (default 0.0001); by symbol or '*'",
    )
    financing: _Fraction | None = Field(
        None,
        description="annual interest rate on borrowed cash (max_gross above 1), charged per "
        "bar by the time elapsed (default 0.05 = 5 %/yr)",
    )
    borrow: _Fraction | None = Field(
        None,
        description="annual fee on the short notional, charged per bar by the time elapsed "
        "(default 0.01 = 1 %/yr)",
    )
    max_gross: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | None = Field(
        None,
        description="the largest gross exposure as a multiple of equity (default 1); above 1 "
        "the account borrows up to (max_gross - 1) x equity to buy",
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
