"""Grounded trading analysis: answers, their stream, history and score."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import StreamingResponse

from kitrade.analysis.schemas import AnalyzeRequest
from kitrade.deployments.gateway import retry
from kitrade.deployments.gateway.auth import read_access, write_access
from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.schemas import SYMBOL_PATTERN, AnalysisAnswerOut, ScoreSummaryOut

__all__ = ["router"]

router = APIRouter(tags=["analysis"])
SymbolQuery = Annotated[str | None, Query(pattern=SYMBOL_PATTERN)]
#: one event of the analysis stream
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["context", "token", "answer"]},
        "data": {"type": "string", "description": "JSON"},
    },
    "required": ["event", "data"],
}


@router.post(
    "/api/v1/analyze",
    dependencies=[Depends(read_access)],
    response_model=AnalysisAnswerOut,
    responses=responses(404, 409, 413, 502),
)
async def analyze(gw: GatewayDep, body: AnalyzeRequest = Body(...)) -> Any:
    """A structured, grounded answer: recommendation, confidence, rationale, risks, sources.

    With ``as_of`` the answer uses only what was known then (bars, knowledge
    documents dated by then, a model trained on data up to then).
    """
    return await retry.call(gw.analysis, "analyze", body.symbol, body.question, body.as_of)


@router.post(
    "/api/v1/analyze/stream",
    dependencies=[Depends(read_access)],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "server-sent events, each `data` one line of JSON",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
        **responses(404, 409, 413, 502),
    },
)
async def analyze_stream(gw: GatewayDep, body: AnalyzeRequest = Body(...)) -> Any:
    """Server-sent events: ``context``, ``token`` (LLM text as it arrives), ``answer``.

    The final ``answer`` event is the same validated answer as ``POST
    /api/v1/analyze`` (offline fallback included). Request errors are plain
    JSON errors with their status, before any event.
    """
    return await gw.analysis_stream(body.symbol, body.question, body.as_of)


@router.get(
    "/api/v1/analyze/score",
    dependencies=[Depends(read_access)],
    response_model=ScoreSummaryOut,
    responses=responses(404),
)
async def analyze_score(gw: GatewayDep, symbol: SymbolQuery = None) -> Any:
    """How past answers did: hit rate and return of following them vs always-hold and
    the forecast-direction signal (answers whose horizon has passed)."""
    return await retry.call(gw.analysis, "score", symbol, False)


@router.post(
    "/api/v1/analyze/score",
    dependencies=[Depends(write_access)],
    response_model=ScoreSummaryOut,
    responses=responses(404, write=True),
)
async def analyze_score_run(gw: GatewayDep, symbol: SymbolQuery = None) -> Any:
    """Score the answers whose horizon has passed now, then summarize."""
    return await retry.call(gw.analysis, "score", symbol, True)


@router.get(
    "/api/v1/analyze/history",
    dependencies=[Depends(read_access)],
    response_model=list[dict[str, Any]],
    responses=responses(404),
)
async def analyze_history(
    gw: GatewayDep,
    symbol: SymbolQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """Stored answers with what produced them."""
    return await retry.call(gw.analysis, "history", symbol, limit)
