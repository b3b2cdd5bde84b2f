"""Market-data sync: run now, and per-symbol state."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from kitrade import errors
from kitrade.deployments.gateway import retry
from kitrade.deployments.gateway.auth import read_access, write_access
from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.schemas import SymbolName, SyncReport, SyncState

__all__ = ["router"]

router = APIRouter(tags=["sync"])


@router.post(
    "/api/v1/sync",
    dependencies=[Depends(write_access)],
    response_model=SyncReport,
    responses=responses(404, 409, 502, write=True),
)
async def sync(
    gw: GatewayDep,
    symbols: Annotated[list[SymbolName] | None, Query(max_length=1000)] = None,
    source: Literal["sample", "files", "http"] | None = None,
) -> Any:
    """Fetch new bars now (incremental per symbol); 409 for a source this server has no
    configuration for (``source=http`` without ``EASYINSIGHT_API_URL``)."""
    try:
        return await retry.call(gw.data, "sync", symbols, source)
    except errors.ConfigError as exc:  # the request is fine; the server cannot serve it
        raise errors.ConflictError(f"source {source or 'auto'}: {exc.message}") from None


@router.get(
    "/api/v1/sync/status",
    dependencies=[Depends(read_access)],
    response_model=list[SyncState],
    responses=responses(),
)
async def sync_status(gw: GatewayDep) -> Any:
    """Per-symbol sync state."""
    return await retry.read(gw.data, "sync_status")
