"""Strategies: which symbols, timeframe, kind and parameters."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query

from kitrade.deployments.gateway import retry
from kitrade.deployments.gateway.auth import read_access, write_access
from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.schemas import (
    STRATEGY_NAME_PATTERN,
    SYMBOL_PATTERN,
    Strategy,
    StrategyDeleted,
    StrategySpec,
    StrategyUpdate,
)

__all__ = ["router"]

router = APIRouter(tags=["strategies"])
NamePath = Annotated[str, Path(pattern=STRATEGY_NAME_PATTERN)]


@router.get(
    "/api/v1/strategies",
    dependencies=[Depends(read_access)],
    response_model=list[Strategy],
    responses=responses(),
)
async def list_strategies(
    gw: GatewayDep, symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN)] = None
) -> Any:
    """Strategies (of one symbol)."""
    return await retry.read(gw.data, "list_strategies", symbol)


@router.post(
    "/api/v1/strategies",
    status_code=201,
    dependencies=[Depends(write_access)],
    response_model=Strategy,
    responses=responses(404, 409, write=True),
)
async def create_strategy(gw: GatewayDep, spec: StrategySpec = Body(...)) -> Any:
    """Add a strategy: its symbols must exist (404); the parameters of a backtest kind are
    checked against it (422 naming an unknown parameter or a value out of range)."""
    return await retry.call(gw.data, "create_strategy", spec.model_dump())


@router.get(
    "/api/v1/strategies/{name}",
    dependencies=[Depends(read_access)],
    response_model=Strategy,
    responses=responses(404),
)
async def get_strategy(gw: GatewayDep, name: NamePath) -> Any:
    """One strategy."""
    return await retry.read(gw.data, "get_strategy", name)


@router.patch(
    "/api/v1/strategies/{name}",
    dependencies=[Depends(write_access)],
    response_model=Strategy,
    responses=responses(404, write=True),
)
async def update_strategy(
    gw: GatewayDep, name: NamePath, changes: StrategyUpdate = Body(...)
) -> Any:
    """Change a strategy; its parameters after the change must fit its kind after it."""
    return await retry.call(gw.data, "update_strategy", name, changes.model_dump(exclude_none=True))


@router.delete(
    "/api/v1/strategies/{name}",
    dependencies=[Depends(write_access)],
    response_model=StrategyDeleted,
    responses=responses(404, write=True),
)
async def delete_strategy(gw: GatewayDep, name: NamePath) -> Any:
    """Remove a strategy."""
    return await retry.call(gw.data, "delete_strategy", name)
