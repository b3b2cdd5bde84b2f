"""Benchmark: POST /api/v1/analyze (offline analyst) and knowledge search through the API,
against a bare chromadb query with the same embedding model, in one run.

Starts a throw-away embedded PostgreSQL, loads the sample bars, trains a tiny
EURUSD model, deploys the kitrade Serve app on 127.0.0.1 and measures
sequential requests (bounded: ``--n`` of each). The bare query embeds the
question with the same all-MiniLM-L6-v2 model and queries a chromadb
collection holding the same starter documents, in this process.

Usage:
    python scripts/bench_analysis.py [--n 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _bench_setup import bench_store, free_port

QUESTIONS = [
    "Should I buy or sell EURUSD?",
    "Is EURUSD overbought?",
    "What is the risk on EURUSD now?",
    "How reliable is the EURUSD forecast?",
    "Where is EURUSD heading this week?",
]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="requests of each kind")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import httpx
    import ray
    from ray import serve

    from kitrade.analysis.knowledge import Embedder, KnowledgeBase
    from kitrade.cluster import connect
    from kitrade.deployments.common import AppArgs
    from kitrade.deployments.gateway import build_app
    from kitrade.training.tasks import new_run_id, train_symbol

    with bench_store("kitrade-bench-analysis-") as bench:
        settings, tmp = bench.settings, bench.tmp
        train_symbol(
            settings,
            "EURUSD",
            run_id=new_run_id(),
            overrides={"max_steps": 30, "mlp_units": 32},
        )
        bench.db.close()
        port = free_port()
        env = bench.env() | {
            "KITRADE_LLM_BASE_URL": "",
            "KITRADE_RATE_LIMIT_PER_S": "0",  # measure latency, not the limiter
        }
        connect(num_cpus=2)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(AppArgs(env=env)), name="kitrade", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as http:
            for _ in range(5):  # warm-up: models, embeddings, caches
                http.post("/api/v1/analyze", json={"symbol": "EURUSD", "question": "warm up"})
                http.get("/api/v1/knowledge/search", params={"q": "warm up"})
            analyze, search = [], []
            for i in range(args.n):
                q = QUESTIONS[i % len(QUESTIONS)]
                t0 = time.perf_counter()
                r = http.post("/api/v1/analyze", json={"symbol": "EURUSD", "question": q})
                analyze.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(r.text)
            for i in range(args.n):  # each kind on its own, like the bare query below
                q = QUESTIONS[i % len(QUESTIONS)]
                t0 = time.perf_counter()
                r = http.get("/api/v1/knowledge/search", params={"q": q, "k": 5})
                search.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(r.text)
            from kitrade.analysis.actors import get_knowledge_actor

            kb_actor = get_knowledge_actor(settings)
            direct = []  # the knowledge actor called straight from this driver
            for i in range(args.n):
                q = QUESTIONS[i % len(QUESTIONS)]
                t0 = time.perf_counter()
                ray.get(kb_actor.search.remote(q, 5, None, None))
                direct.append(time.perf_counter() - t0)
            floor = []  # the Serve proxy + gateway hop alone: a static page
            for _ in range(args.n):
                t0 = time.perf_counter()
                http.get("/docs")
                floor.append(time.perf_counter() - t0)
        # The bare query runs now, with the platform up and idle, like the API calls.

        import chromadb
        from chromadb.config import Settings as ChromaSettings

        bare_kb = KnowledgeBase(
            chromadb.PersistentClient(
                path=str(tmp / "bare"),
                settings=ChromaSettings(anonymized_telemetry=False),
            ),
            Embedder(),
        )
        bare_kb.seed_starter()
        col = bare_kb._col
        emb = bare_kb._embedder
        bare = []
        for i in range(args.n):
            q = QUESTIONS[i % len(QUESTIONS)]
            t0 = time.perf_counter()
            col.query(query_embeddings=emb.embed([q]), n_results=5)
            bare.append(time.perf_counter() - t0)
        serve.shutdown()
        ray.shutdown()

    figures = {
        "analyze_p50_ms": _pct(analyze, 50),
        "analyze_p99_ms": _pct(analyze, 99),
        "search_p50_ms": _pct(search, 50),
        "search_p99_ms": _pct(search, 99),
        "bare_query_p50_ms": _pct(bare, 50),
        "bare_query_p99_ms": _pct(bare, 99),
        "gateway_floor_p50_ms": _pct(floor, 50),
        "actor_direct_p50_ms": _pct(direct, 50),
    }
    figures["search_ratio"] = figures["search_p50_ms"] / figures["bare_query_p50_ms"]
    print(f"{'what':<44} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{'POST /api/v1/analyze (offline analyst)':<44} {figures['analyze_p50_ms']:>8.1f} "
        f"{figures['analyze_p99_ms']:>8.1f}   target p50 < 150"
    )
    print(
        f"{'GET /api/v1/knowledge/search':<44} {figures['search_p50_ms']:>8.1f} "
        f"{figures['search_p99_ms']:>8.1f}"
    )
    print(
        f"{'bare chromadb query (same embeddings)':<44} {figures['bare_query_p50_ms']:>8.1f} "
        f"{figures['bare_query_p99_ms']:>8.1f}"
    )
    print(
        f"{'GET /docs (Serve proxy + gateway floor)':<44} {figures['gateway_floor_p50_ms']:>8.1f}"
    )
    print(f"{'knowledge actor called directly':<44} {figures['actor_direct_p50_ms']:>8.1f}")
    print(f"search / bare query p50: {figures['search_ratio']:.2f}x (target <= 1.5x)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
