"""The knowledge base: documents (text or from a public URL), search, delete."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query

from kitrade.deployments.gateway import retry
from kitrade.deployments.gateway.auth import read_access, write_access
from kitrade.deployments.gateway.deps import GatewayDep
from kitrade.deployments.gateway.http_errors import responses
from kitrade.schemas import (
    DOC_ID_PATTERN,
    SYMBOL_PATTERN,
    CalendarDate,
    KnowledgeAdded,
    KnowledgeDeleted,
    KnowledgeDoc,
    KnowledgeDocument,
    KnowledgePassage,
    KnowledgeUrl,
)

__all__ = ["router"]

router = APIRouter(tags=["knowledge"])


@router.post(
    "/api/v1/knowledge",
    status_code=201,
    dependencies=[Depends(write_access)],
    response_model=KnowledgeAdded,
    responses=responses(502, write=True),
)
async def knowledge_add(gw: GatewayDep, doc: KnowledgeDoc = Body(...)) -> Any:
    """Add a text or Markdown document (chunked and embedded)."""
    return await retry.call(
        gw.analysis, "kb_add", doc.text, doc.source, doc.title, doc.symbols, doc.date
    )


@router.post(
    "/api/v1/knowledge/url",
    status_code=201,
    dependencies=[Depends(write_access)],
    response_model=KnowledgeAdded,
    responses=responses(502, write=True),
)
async def knowledge_add_url(gw: GatewayDep, doc: KnowledgeUrl = Body(...)) -> Any:
    """Fetch a text, Markdown or HTML document from a public URL and add it.

    Loopback, private, link-local (cloud metadata) and other non-public
    addresses are refused (422), redirects included.
    """
    return await retry.call(gw.analysis, "kb_add_url", doc.url, doc.title, doc.symbols, doc.date)


@router.get(
    "/api/v1/knowledge",
    dependencies=[Depends(read_access)],
    response_model=list[KnowledgeDocument],
    responses=responses(502),
)
async def knowledge_list(gw: GatewayDep) -> Any:
    """Knowledge documents."""
    return await retry.call(gw.analysis, "kb_list")


@router.get(
    "/api/v1/knowledge/search",
    dependencies=[Depends(read_access)],
    response_model=list[KnowledgePassage],
    responses=responses(502),
)
async def knowledge_search(
    gw: GatewayDep,
    q: Annotated[str, Query(min_length=1, max_length=2000)],
    k: Annotated[int, Query(ge=1, le=50)] = 5,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN)] = None,
    as_of: Annotated[CalendarDate | None, Query()] = None,
) -> Any:
    """Nearest passages (optionally only documents dated on or before ``as_of``)."""
    return await gw.knowledge_search(q, k, symbol, as_of)


@router.delete(
    "/api/v1/knowledge/{doc_id}",
    dependencies=[Depends(write_access)],
    response_model=KnowledgeDeleted,
    responses=responses(404, 502, write=True),
)
async def knowledge_delete(
    gw: GatewayDep, doc_id: Annotated[str, Path(pattern=DOC_ID_PATTERN)]
) -> Any:
    """Delete a document."""
    return await retry.call(gw.analysis, "kb_delete", doc_id)
