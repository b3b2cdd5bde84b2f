"""Forecasts and training: the old system's ``/api/v1/forecast/…`` paths."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from kitrade.deployments.gateway import retry
from kitrade.deployments.gateway.auth import read_access, write_access
from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.schemas import (
    SYMBOL_PATTERN,
    Forecast,
    RunProgress,
    SymbolName,
    TrainingReport,
    TrainingStarted,
)

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/api/v1/forecast/training/progress",
    tags=["training"],
    dependencies=[Depends(read_access)],
    response_model=RunProgress,
    responses=responses(404),
)
async def training_progress(
    gw: GatewayDep, run_id: Annotated[str | None, Query(max_length=64)] = None
) -> Any:
    """Progress of the latest (or given) training run."""
    return await retry.read(gw.data, "progress", run_id)


@router.post(
    "/api/v1/forecast/train-all",
    tags=["training"],
    dependencies=[Depends(write_access)],
    response_model=TrainingReport,
    responses={
        202: {"model": TrainingStarted, "description": "started in the background"},
        **responses(404, 409, write=True),
    },
)
async def train_all(
    gw: GatewayDep,
    force: bool = False,
    background: bool = True,
    symbols: Annotated[list[SymbolName] | None, Query(max_length=1000)] = None,
) -> Any:
    """Train every active symbol (or ``symbols``) on the cluster: 202 with the run's progress
    link, or (``background=false``) the run's report when it is done."""
    return await gw.train_all(symbols, force=force, background=background)


@router.get(
    "/api/v1/forecast/{symbol}",
    tags=["forecast"],
    dependencies=[Depends(read_access)],
    response_model=Forecast,
    responses=responses(404, 409),
)
async def forecast(
    gw: GatewayDep,
    symbol: Annotated[str, Path(pattern=SYMBOL_PATTERN)],
    horizon: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    bands: Annotated[
        Literal["calibrated", "raw"],
        Query(description="`calibrated` (default): conformally calibrated; `raw`: as emitted"),
    ] = "calibrated",
) -> Any:
    """Forecast with 80 % and 95 % intervals from the active model (``horizon`` at most the
    model's; 422 above it). The bands are calibrated (``calibration`` says how) unless
    ``bands=raw``."""
    return await gw.forecast_answer(symbol, horizon, bands)
