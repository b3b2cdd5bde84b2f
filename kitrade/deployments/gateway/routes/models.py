"""Model versions: list, their forecast quality, promote, roll back."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query

from kitrade.deployments.gateway import retry
from kitrade.deployments.gateway.auth import read_access, write_access
from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.errors import NotFoundError
from kitrade.schemas import (
    SYMBOL_PATTERN,
    VERSION_PATTERN,
    ModelEvaluationOut,
    ModelVersionOut,
    PromoteBody,
    RollbackBody,
    version_symbol,
)

__all__ = ["router"]

router = APIRouter(tags=["models"])
SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN)]


def _own(symbol: str, version: str | None) -> str | None:
    """``version`` if it is one of ``symbol``'s; another symbol's version is not found here."""
    if version is not None and version_symbol(version) != symbol:
        raise NotFoundError(
            f"version {version} of {symbol} not found (it is {version_symbol(version)}'s)"
        )
    return version


@router.get(
    "/api/v1/models",
    dependencies=[Depends(read_access)],
    response_model=list[ModelVersionOut],
    responses=responses(),
)
async def models(
    gw: GatewayDep, symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN)] = None
) -> Any:
    """Model versions with metrics, scope (`symbol` or `shared`) and group (newest first)."""
    return await retry.read(gw.data, "versions", symbol)


@router.get(
    "/api/v1/models/{symbol}/evaluation",
    dependencies=[Depends(read_access)],
    response_model=ModelEvaluationOut,
    responses=responses(404),
)
async def evaluation(
    gw: GatewayDep,
    symbol: SymbolPath,
    version: Annotated[
        str | None,
        Query(
            pattern=VERSION_PATTERN, description="one of the symbol's versions (default: active)"
        ),
    ] = None,
) -> Any:
    """A version's forecast quality: NHITS raw and calibrated against each baseline on every
    score, the winner per score, the calibration, and the sentence saying whether a baseline
    beats NHITS on every score. 404: unknown symbol, or a version that is not the symbol's."""
    return await retry.read(gw.data, "evaluation", symbol, _own(symbol, version))


@router.post(
    "/api/v1/models/{symbol}/promote",
    dependencies=[Depends(write_access)],
    response_model=ModelVersionOut,
    responses=responses(404, 409, write=True),
)
async def promote(gw: GatewayDep, symbol: SymbolPath, body: PromoteBody = Body(...)) -> Any:
    """Activate a version (overrides the gate)."""
    return await gw.activate("promote", symbol, _own(symbol, body.version))


@router.post(
    "/api/v1/models/{symbol}/rollback",
    dependencies=[Depends(write_access)],
    response_model=ModelVersionOut,
    responses=responses(404, 409, write=True),
)
async def rollback(
    gw: GatewayDep, symbol: SymbolPath, body: RollbackBody | None = Body(None)
) -> Any:
    """Re-activate the previous (or given) version."""
    return await gw.activate("rollback", symbol, _own(symbol, body.to_version if body else None))
