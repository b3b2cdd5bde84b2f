"""Knowledge-base use cases: add (text, file, URL), list, search, remove.

The store has one owner, the knowledge actor (``kitrade.analysis.actors``);
these functions take its handle (``kb``) and turn a failed actor call into
the ``KitradeError`` the caller can show.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitrade.errors import InvalidInputError, KitradeError, UpstreamError

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = [
    "DOCUMENT_SUFFIXES",
    "actor_await",
    "actor_call",
    "add_files",
    "add_text",
    "add_url",
    "check_files",
    "count",
    "knowledge_actor",
    "list_documents",
    "remove",
    "search",
]

#: files ``add_files`` accepts
DOCUMENT_SUFFIXES = (".md", ".txt", ".markdown")


def _actor_error(exc: BaseException, timeout_s: float) -> KitradeError:
    """The ``KitradeError`` to raise for a failed knowledge-actor call."""
    import ray

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, KitradeError):
            return type(cause)(cause.message)
        return UpstreamError(f"knowledge store failed: {type(cause or exc).__name__}")
    if isinstance(exc, TimeoutError):  # ray's GetTimeoutError is one too
        return UpstreamError(f"knowledge store did not answer within {timeout_s:g}s")
    return UpstreamError("knowledge store is restarting; try again")


def actor_call(ref: Any, timeout_s: float = 60.0) -> Any:
    """``ray.get`` that re-raises a ``KitradeError`` raised inside the actor as itself."""
    import ray

    try:
        return ray.get(ref, timeout=timeout_s)
    except (ray.exceptions.RayTaskError, TimeoutError, ray.exceptions.RayActorError) as exc:
        raise _actor_error(exc, timeout_s) from None


async def actor_await(ref: Any, timeout_s: float = 60.0) -> Any:
    """``await ref`` with the error mapping of ``actor_call`` (for async callers)."""
    import asyncio

    import ray

    try:
        return await asyncio.wait_for(ref, timeout_s)
    except (ray.exceptions.RayTaskError, TimeoutError, ray.exceptions.RayActorError) as exc:
        raise _actor_error(exc, timeout_s) from None


def knowledge_actor(settings: Settings, *, connected: bool = False) -> Any:
    """The knowledge actor on the running platform's cluster, or on a private local one.

    Args:
        settings: configuration.
        connected: the caller is already connected to a cluster (a replica, a job).
    """
    from kitrade.analysis.actors import get_knowledge_actor
    from kitrade.cluster import connect, connect_platform

    if not connected and not connect_platform(settings):
        connect()
    return get_knowledge_actor(settings)


def add_text(
    kb: Any,
    *,
    text: str,
    source: str,
    title: str | None = None,
    symbols: list[str] | None = None,
    date_: str | None = None,
) -> dict[str, Any]:
    """Add (chunk, embed) one document; its ``doc_id`` and ``chunks``."""
    return actor_call(kb.add_document.remote(text, source, title, symbols, date_))


def check_files(files: list[Path]) -> None:
    """``InvalidInputError`` unless every file is an existing text or Markdown file."""
    for f in files:
        if f.suffix.lower() not in DOCUMENT_SUFFIXES:
            raise InvalidInputError(f"{f}: expected a .md or .txt file")
        if not f.is_file():
            raise InvalidInputError(f"{f}: no such file")


def add_files(
    kb: Any, files: list[Path], *, symbols: list[str] | None = None, date_: str | None = None
) -> list[tuple[Path, dict[str, Any]]]:
    """Add text/Markdown files (all checked before any is added); each file with its result."""
    check_files(files)
    return [
        (f, add_text(kb, text=f.read_text(), source=f.name, symbols=symbols, date_=date_))
        for f in files
    ]


def add_url(
    settings: Settings,
    kb: Any,
    *,
    url: str,
    title: str | None = None,
    symbols: list[str] | None = None,
    date_: str | None = None,
) -> dict[str, Any]:
    """Fetch a public URL (hosts allowed by ``settings.fetch_allow``) and add its text."""
    from kitrade.analysis.fetch import fetch_document

    allow = frozenset(a.strip() for a in settings.fetch_allow.split(",") if a.strip())
    doc = fetch_document(url, allow=allow)
    if not doc.text.strip():
        raise InvalidInputError(f"url: {url} has no text")
    return add_text(
        kb, text=doc.text, source=doc.url, title=title or doc.title, symbols=symbols, date_=date_
    )


def list_documents(kb: Any) -> list[dict[str, Any]]:
    """Stored documents."""
    return actor_call(kb.list_documents.remote())


def search(
    kb: Any, *, query: str, k: int = 5, symbol: str | None = None, as_of: str | None = None
) -> list[dict[str, Any]]:
    """The ``k`` nearest chunks (of ``symbol``'s documents, dated no later than ``as_of``)."""
    return actor_call(kb.search.remote(query, k, symbol, as_of))


def remove(kb: Any, *, doc_id: str) -> int:
    """Delete a document; how many chunks went."""
    return int(actor_call(kb.delete_document.remote(doc_id)))


def count(kb: Any, *, timeout_s: float = 10.0) -> int:
    """Stored chunks (the health probe)."""
    return int(actor_call(kb.count.remote(), timeout_s=timeout_s))
