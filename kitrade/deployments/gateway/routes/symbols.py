"""Symbols and their bars."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query

from kitrade.deployments.gateway import retry
from kitrade.deployments.gateway.auth import read_access, write_access
from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.schemas import (
    SYMBOL_PATTERN,
    BarOut,
    IsoDateTime,
    Symbol,
    SymbolDeleted,
    SymbolIn,
    SymbolUpdate,
    Timeframe,
)

__all__ = ["router"]

router = APIRouter(tags=["symbols"])
SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN)]


@router.get(
    "/api/v1/symbols",
    dependencies=[Depends(read_access)],
    response_model=list[Symbol],
    responses=responses(),
)
async def list_symbols(gw: GatewayDep, active_only: bool = False) -> Any:
    """Symbols with last bar, last close and bar count."""
    return await retry.read(gw.data, "list_symbols", active_only)


@router.post(
    "/api/v1/symbols",
    status_code=201,
    dependencies=[Depends(write_access)],
    response_model=Symbol,
    responses=responses(409, write=True),
)
async def create_symbol(gw: GatewayDep, spec: SymbolIn = Body(...)) -> Any:
    """Add a symbol."""
    return await retry.call(gw.data, "create_symbol", spec.model_dump())


@router.get(
    "/api/v1/symbols/{symbol}",
    dependencies=[Depends(read_access)],
    response_model=Symbol,
    responses=responses(404),
)
async def get_symbol(gw: GatewayDep, symbol: SymbolPath) -> Any:
    """One symbol."""
    return await retry.read(gw.data, "get_symbol", symbol)


@router.patch(
    "/api/v1/symbols/{symbol}",
    dependencies=[Depends(write_access)],
    response_model=Symbol,
    responses=responses(404, write=True),
)
async def update_symbol(
    gw: GatewayDep, symbol: SymbolPath, changes: SymbolUpdate = Body(...)
) -> Any:
    """Change a symbol."""
    return await retry.call(gw.data, "update_symbol", symbol, changes.model_dump(exclude_none=True))


@router.delete(
    "/api/v1/symbols/{symbol}",
    dependencies=[Depends(write_access)],
    response_model=SymbolDeleted,
    responses=responses(404, 409, write=True),
)
async def delete_symbol(gw: GatewayDep, symbol: SymbolPath, delete_bars: bool = False) -> Any:
    """Remove a symbol (its bars only with ``delete_bars=true``)."""
    return await retry.call(gw.data, "delete_symbol", symbol, delete_bars)


@router.get(
    "/api/v1/symbols/{symbol}/bars",
    tags=["bars"],
    dependencies=[Depends(read_access)],
    response_model=list[BarOut],
    responses=responses(404),
)
async def bars(
    gw: GatewayDep,
    symbol: SymbolPath,
    last: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    start: IsoDateTime | None = None,
    end: IsoDateTime | None = None,
    timeframe: Timeframe | None = None,
) -> Any:
    """Bars: the latest ``last``, a ``start``/``end`` range, optionally resampled."""
    return await retry.read(gw.data, "bars", symbol, last, start, end, timeframe)
