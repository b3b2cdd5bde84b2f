"""``GET /health``: one entry per component."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Any

from fastapi import APIRouter

from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.schemas import Health

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    responses={**responses(read_auth=False), 503: {"model": Health, "description": "degraded"}},
)
async def health(gw: GatewayDep) -> Any:
    """One entry per component; 503 when a required one is down."""
    return await gw.health()
