"""Backtests: start one on the cluster, list them, read one with its result."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse

from kitrade.deployments.gateway import retry
from kitrade.deployments.gateway.auth import read_access, write_access
from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.schemas import BacktestDetail, BacktestRequest, BacktestStarted, BacktestSummary

__all__ = ["router"]

router = APIRouter(tags=["backtests"])
BacktestId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post(
    "/api/v1/backtests",
    status_code=202,
    dependencies=[Depends(write_access)],
    response_model=BacktestStarted,
    responses=responses(404, write=True),
)
async def create_backtest(gw: GatewayDep, request: BacktestRequest = Body(...)) -> Any:
    """Record a backtest and run it on the cluster: 202 with its id and link. Bad input is
    refused first (422 naming the field: costs, an empty period or one outside the stored
    bars, too few bars for the folds with how many are needed, a parameter-only strategy;
    404 for an unknown strategy or symbol)."""
    started = await retry.call(
        gw.data, "create_backtest", request.model_dump(mode="json", exclude_unset=True)
    )
    return JSONResponse(status_code=202, content=started)


@router.get(
    "/api/v1/backtests",
    dependencies=[Depends(read_access)],
    response_model=list[BacktestSummary],
    responses=responses(),
)
async def list_backtests(
    gw: GatewayDep,
    status: Literal["queued", "running", "failed", "done"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Backtests, newest first, without their curves."""
    return await retry.read(gw.data, "list_backtests", status, limit)


@router.get(
    "/api/v1/backtests/{backtest_id}",
    dependencies=[Depends(read_access)],
    response_model=BacktestDetail,
    responses=responses(404),
)
async def get_backtest(gw: GatewayDep, backtest_id: BacktestId) -> Any:
    """A backtest: status and progress, error, and once done its metrics beside buy-and-hold
    and the naive signal, equity and drawdown curves, trades, folds and look-ahead checks."""
    return await retry.read(gw.data, "get_backtest", backtest_id)
