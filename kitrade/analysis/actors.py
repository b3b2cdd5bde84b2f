"""The single owner of the on-disk knowledge store: a named, detached Ray actor.

Every other process (analysis replicas, the CLI, sync hooks) reaches the
store through this actor, so chromadb's ``PersistentClient`` is only ever
opened by one process. Calls are serialised by the actor (one at a time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ray

from kitrade.analysis.knowledge import Embedder, KnowledgeBase, open_client
from kitrade.analysis.notes import notes_for
from kitrade.cluster import detached_actor

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["KNOWLEDGE_ACTOR", "KnowledgeActor", "get_knowledge_actor"]

KNOWLEDGE_ACTOR = "kitrade-knowledge"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)
class KnowledgeActor:
    """Owns the knowledge base; methods mirror ``KnowledgeBase``."""

    def __init__(self, settings: Settings, seed: bool = True) -> None:
        import torch  # heavy (torch): only where a model runs

        # One intra-op thread: a query embedding is too small to gain from more, and
        # OpenMP threads that share the cores with the proxy and gateway replicas
        # waiting on the answer stall each other (measured: 24 ms vs 19.5 ms per search).
        torch.set_num_threads(1)

        self._kb = KnowledgeBase(open_client(settings), Embedder())
        if seed:
            self._kb.seed_starter()

    def add_document(
        self,
        text: str,
        source: str,
        title: str | None = None,
        symbols: list[str] | None = None,
        date_: str | None = None,
        doc_id: str | None = None,
    ) -> dict[str, Any]:
        """Add (or replace) a document."""
        return self._kb.add_document(
            text, source=source, title=title, symbols=symbols, date_=date_, doc_id=doc_id
        )

    def list_documents(self) -> list[dict[str, Any]]:
        """Stored documents."""
        return self._kb.list_documents()

    def delete_document(self, doc_id: str) -> int:
        """Delete a document."""
        return self._kb.delete_document(doc_id)

    def search(
        self, query: str, k: int = 5, symbol: str | None = None, as_of: str | None = None
    ) -> list[dict[str, Any]]:
        """Nearest chunks as dicts."""
        return [p.model_dump() for p in self._kb.search(query, k=k, symbol=symbol, as_of=as_of)]

    def count(self) -> int:
        """Stored chunks."""
        return self._kb.count()


def get_knowledge_actor(settings: Settings, *, seed: bool = True) -> ray.actor.ActorHandle:
    """The knowledge actor, created (detached) if missing."""
    return detached_actor(KnowledgeActor, KNOWLEDGE_ACTOR, settings, seed)


def publish_notes(settings: Settings, db: Any, symbols: list[str] | None = None) -> int:
    """Write fresh market notes for ``symbols`` into the knowledge base; returns how many."""
    with db.connection() as conn:
        notes = notes_for(conn, symbols)
    if not notes:
        return 0
    actor = get_knowledge_actor(settings)
    ray.get(
        [
            actor.add_document.remote(
                n["text"], n["source"], None, n["symbols"], n["date"], n["doc_id"]
            )
            for n in notes
        ]
    )
    return len(notes)
