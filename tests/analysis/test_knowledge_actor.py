"""One owner for the on-disk store: many processes write through the knowledge actor at once."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_concurrent_writers_from_several_processes_all_land(module_settings):
    import ray

    from kitrade.analysis.actors import get_knowledge_actor
    from kitrade.cluster import connect

    connect(num_cpus=4)
    try:
        actor = get_knowledge_actor(module_settings, seed=False)

        @ray.remote(num_cpus=1)
        def writer(n: int) -> tuple[int, list[str]]:
            import os

            from kitrade.analysis.actors import get_knowledge_actor

            kb = get_knowledge_actor(module_settings, seed=False)
            refs = [
                kb.add_document.remote(
                    f"# Note {n}-{i}\n\nWriter {n} note {i} about topic{n}x{i} and volatility.",
                    f"writer-{n}",
                    None,
                    None,
                    "2024-01-01",
                )
                for i in range(5)
            ]
            return os.getpid(), [r["doc_id"] for r in ray.get(refs)]

        results = ray.get([writer.remote(n) for n in range(4)])
        pids = {pid for pid, _ in results}
        ids = {d for _, docs in results for d in docs}
        assert len(pids) >= 2  # really several processes
        stored = {d["doc_id"] for d in ray.get(actor.list_documents.remote())}
        assert ids <= stored and len(ids) == 20
        hits = ray.get(actor.search.remote("topic2x3", 1))
        assert "Writer 2 note 3" in hits[0]["text"]
    finally:
        ray.shutdown()
