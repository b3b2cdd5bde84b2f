"""Analysis: knowledge base (chromadb), indicators, grounded context, LLM backends, analyst."""

__all__: list[str] = []
