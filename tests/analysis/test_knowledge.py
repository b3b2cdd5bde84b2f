"""The knowledge base on real chromadb with the real bundled embedding model."""

from __future__ import annotations

import pytest

from kitrade.analysis.knowledge import STARTER_DIR, Embedder, KnowledgeBase, chunk_text
from kitrade.errors import InvalidInputError, NotFoundError


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture
def kb(tmp_path, embedder):
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(tmp_path), settings=Settings(anonymized_telemetry=False)
    )
    return KnowledgeBase(client, embedder)


def test_chunking_keeps_paragraphs_and_bounds_size():
    text = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(20))
    chunks = chunk_text(text, max_chars=800, overlap=100)
    assert len(chunks) > 3 and all(len(c) <= 800 + 100 + 2 for c in chunks)
    assert "Paragraph 0" in chunks[0] and "Paragraph 19" in chunks[-1]
    assert chunk_text("x" * 3000, max_chars=1000, overlap=0) == ["x" * 1000] * 3


def test_embeddings_work_offline_and_are_normalised(embedder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    v = embedder.embed(["relative strength index", "stop loss"])
    assert len(v) == 2 and len(v[0]) == 384
    assert abs(sum(x * x for x in v[0]) - 1.0) < 1e-4


def test_add_search_list_delete_with_metadata(kb):
    a = kb.add_document(
        "# RSI\n\nThe relative strength index measures momentum; above 70 is "
        "overbought, below 30 oversold.",
        source="notes/rsi.md",
        date_="2024-01-05",
    )
    b = kb.add_document(
        "# Stops\n\nAlways place a stop loss and risk at most one percent of "
        "the account per trade.",
        source="notes/risk.md",
        symbols=["EURUSD"],
        date_="2025-06-01",
    )
    assert a["title"] == "RSI" and a["chunks"] == 1
    hits = kb.search("is the market overbought?", k=2)
    assert hits[0].id == f"{a['doc_id']}#0" and hits[0].source == "notes/rsi.md"
    assert hits[0].score > hits[1].score
    # as-of retrieval never sees documents dated later
    assert [h.id.split("#")[0] for h in kb.search("stop loss risk", k=5, as_of="2024-12-31")] == [
        a["doc_id"]
    ]
    with pytest.raises(InvalidInputError, match="as_of"):
        kb.search("stop loss", as_of="0000-00-00")
    with pytest.raises(InvalidInputError, match="symbol"):
        kb.add_document("text", source="s", symbols=["not a symbol"])
    docs = {d["doc_id"]: d for d in kb.list_documents()}
    assert docs[b["doc_id"]]["symbols"] == ["EURUSD"] and docs[b["doc_id"]]["date"] == "2025-06-01"
    assert kb.delete_document(b["doc_id"]) == 1
    with pytest.raises(NotFoundError):
        kb.delete_document(b["doc_id"])
    again = kb.add_document("# RSI\n\nreplaced text about momentum", source="x", doc_id=a["doc_id"])
    assert again["doc_id"] == a["doc_id"] and kb.count() == 1


@pytest.mark.parametrize(
    ("text", "kw", "match"),
    [
        ("", {}, "empty"),
        ("x" * 200_001, {}, "at most"),
        ("ok", {"date_": "yesterday"}, "ISO 8601"),
        ("ok", {"doc_id": "../../etc"}, "doc_id"),
    ],
)
def test_bad_documents_are_refused(kb, text, kw, match):
    with pytest.raises(InvalidInputError, match=match):
        kb.add_document(text, source="s", **kw)


def test_starter_knowledge_is_seeded_once(kb):
    if not list(STARTER_DIR.glob("*.md")):
        pytest.skip("no starter documents")
    added = kb.seed_starter()
    assert added and kb.seed_starter() == []
    assert any("rsi" in h.text.lower() for h in kb.search("what does RSI mean", k=3))
