"""Benchmark: kitrade's bar ingest path against a bare psycopg COPY, in the same run.

Starts a throw-away embedded PostgreSQL, generates synthetic bars lazily (a
stream of frames, never the whole set in memory) and ingests them

1. through ``kitrade.data.bars.ingest_bars`` (validation, binary COPY,
   per-batch transactions, upsert path when batches overlap) into ``bars``;
2. through bare psycopg ``COPY … FROM STDIN`` into an identical empty table
   (``LIKE bars INCLUDING ALL``), twice: text rows from ``DataFrame.to_csv``
   and binary rows from ``psycopg``'s ``write_row``; the faster one is the
   baseline (``copy_rows_per_s``). For transparency a third run COPYs bytes
   encoded beforehand, untimed: the server's floor, not a client anyone runs;

then re-ingests the kitrade set once more (every row conflicts, nothing
changes) to show the upsert path's rate. Prints a table and the ratio; peak
resident memory is read after the kitrade ingest.

Usage:
    python scripts/bench_ingest.py [--rows 1000000] [--symbols 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from _bench_setup import temp_postgres

CHUNK = 100_000


def frames(symbol_index: int, rows: int) -> Iterator[pd.DataFrame]:
    """Synthetic minute bars for one symbol, ``CHUNK`` rows at a time."""
    rng = np.random.default_rng(symbol_index)
    start = pd.Timestamp("2015-01-01", tz="UTC")
    price = 100.0 + symbol_index
    for offset in range(0, rows, CHUNK):
        n = min(CHUNK, rows - offset)
        close = price + np.cumsum(rng.normal(0, 0.05, n))
        price = float(close[-1])
        ts = start + pd.to_timedelta(np.arange(offset, offset + n), unit="min")
        spread = np.abs(rng.normal(0, 0.02, n))
        yield pd.DataFrame(
            {
                "ts": ts,
                "open": close - spread / 2,
                "high": close + spread,
                "low": close - spread,
                "close": close,
                "volume": rng.integers(1, 10_000, n).astype("float64"),
            }
        )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(rows: int, n_symbols: int) -> dict[str, float]:
    import psycopg

    from kitrade.data.bars import encode_copy_binary, ingest_bars
    from kitrade.data.migrations import migrate

    per_symbol = rows // n_symbols
    total = per_symbol * n_symbols
    symbols = [f"SYN{i:03d}" for i in range(n_symbols)]
    with temp_postgres("kitrade-bench-") as (_tmp, server):
        with psycopg.connect(server.uri, autocommit=True) as conn:
            migrate(conn)
            conn.execute("CREATE TABLE bars_text (LIKE bars INCLUDING ALL)")
            conn.execute("CREATE TABLE bars_rows (LIKE bars INCLUDING ALL)")
            conn.execute("CREATE TABLE bars_floor (LIKE bars INCLUDING ALL)")
        rss_before = _peak_rss_mib()

        # 1. kitrade's path
        with psycopg.connect(server.uri) as conn:
            t0 = time.perf_counter()
            for i, sym in enumerate(symbols):
                ingest_bars(conn, symbol=sym, bars=frames(i, per_symbol))
            kitrade_s = time.perf_counter() - t0
        peak_rss = _peak_rss_mib()
        with psycopg.connect(server.uri, autocommit=True) as conn:
            stored = conn.execute("SELECT count(*) FROM bars").fetchone()[0]
            conn.execute("CHECKPOINT")
        if stored != total:
            raise RuntimeError(f"expected {total} rows stored, was {stored}")

        # 2a. bare COPY, text rows from to_csv
        with psycopg.connect(server.uri) as conn:
            t0 = time.perf_counter()
            for i, sym in enumerate(symbols):
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        "COPY bars_text (symbol, ts, open, high, low, close, volume) FROM STDIN"
                    ) as cp,
                ):
                    for f in frames(i, per_symbol):
                        f.insert(0, "symbol", sym)
                        buf = io.StringIO()
                        f.to_csv(
                            buf,
                            sep="\t",
                            header=False,
                            index=False,
                            date_format="%Y-%m-%d %H:%M:%S%z",
                        )
                        cp.write(buf.getvalue())
                conn.commit()
            text_s = time.perf_counter() - t0
        # 2b. bare COPY, binary rows through psycopg's write_row
        with psycopg.connect(server.uri) as conn:
            t0 = time.perf_counter()
            for i, sym in enumerate(symbols):
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        "COPY bars_rows (symbol, ts, open, high, low, close, volume)"
                        " FROM STDIN (FORMAT BINARY)"
                    ) as cp,
                ):
                    cp.set_types(
                        [
                            "text",
                            "timestamptz",
                            "float8",
                            "float8",
                            "float8",
                            "float8",
                            "float8",
                        ]
                    )
                    for f in frames(i, per_symbol):
                        ts = f["ts"].dt.to_pydatetime()
                        cols = [
                            f[c].to_numpy().tolist()
                            for c in ("open", "high", "low", "close", "volume")
                        ]
                        for j in range(len(f)):
                            cp.write_row(
                                (
                                    sym,
                                    ts[j],
                                    cols[0][j],
                                    cols[1][j],
                                    cols[2][j],
                                    cols[3][j],
                                    cols[4][j],
                                )
                            )
                conn.commit()
            rows_s = time.perf_counter() - t0
        # 2c. server floor: COPY of bytes encoded beforehand (encoding not timed)
        floor_s = 0.0
        with psycopg.connect(server.uri) as conn:
            for i, sym in enumerate(symbols):
                blobs = [encode_copy_binary(f, symbol=sym) for f in frames(i, per_symbol)]
                t0 = time.perf_counter()
                with conn.cursor() as cur:
                    for blob in blobs:
                        with cur.copy(
                            "COPY bars_floor (symbol, ts, open, high, low, close, volume)"
                            " FROM STDIN (FORMAT BINARY)"
                        ) as cp:
                            cp.write(blob)
                conn.commit()
                floor_s += time.perf_counter() - t0
                del blobs
        with psycopg.connect(server.uri, autocommit=True) as conn:
            for t in ("bars_text", "bars_rows", "bars_floor"):
                n = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                if n != total:
                    raise RuntimeError(f"{t}: expected {total}, was {n}")
            conn.execute("CHECKPOINT")

        # 3. kitrade's upsert path: the same bars again, all conflicting
        with psycopg.connect(server.uri) as conn:
            t0 = time.perf_counter()
            changed = 0
            for i, sym in enumerate(symbols):
                changed += ingest_bars(conn, symbol=sym, bars=frames(i, per_symbol)).changed
            upsert_s = time.perf_counter() - t0
        if changed != 0:
            raise RuntimeError(f"re-ingest changed {changed} rows")

    copy_s = min(text_s, rows_s)
    return {
        "rows": total,
        "kitrade_rows_per_s": total / kitrade_s,
        "copy_rows_per_s": total / copy_s,
        "ratio": copy_s / kitrade_s,
        "peak_rss_mib": peak_rss,
        "rss_before_mib": rss_before,
        "copy_text_rows_per_s": total / text_s,
        "copy_write_row_rows_per_s": total / rows_s,
        "kitrade_reingest_rows_per_s": total / upsert_s,
        "copy_prebuilt_rows_per_s": total / floor_s,
        "ratio_vs_prebuilt": floor_s / kitrade_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="write figures here")
    args = parser.parse_args(argv)
    res = run(args.rows, args.symbols)
    print(f"{'path':<44} {'rows/s':>12}")
    print(f"{'kitrade ingest_bars (validate+binary COPY)':<44} {res['kitrade_rows_per_s']:>12,.0f}")
    print(f"{'bare COPY, text via to_csv':<44} {res['copy_text_rows_per_s']:>12,.0f}")
    print(f"{'bare COPY, binary via write_row':<44} {res['copy_write_row_rows_per_s']:>12,.0f}")
    print(
        f"{'kitrade re-ingest (upsert, 0 changed)':<44} {res['kitrade_reingest_rows_per_s']:>12,.0f}"
    )
    print(
        f"{'bare COPY of pre-encoded bytes (server floor)':<44} {res['copy_prebuilt_rows_per_s']:>12,.0f}"
    )
    print(f"rows: {res['rows']:,}")
    print(f"ratio kitrade / best bare COPY: {res['ratio']:.2f}x  (target >= 0.8x)")
    print(f"ratio kitrade / server floor (encoding untimed): {res['ratio_vs_prebuilt']:.2f}x")
    print(
        f"peak RSS after kitrade ingest: {res['peak_rss_mib']:.0f} MiB "
        f"(before: {res['rss_before_mib']:.0f} MiB; target < 1024 MiB)"
    )
    if args.json:
        keys = ("kitrade_rows_per_s", "copy_rows_per_s", "ratio", "peak_rss_mib")
        args.json.write_text(
            json.dumps(
                {k: res[k] for k in keys} | {k: v for k, v in res.items() if k not in keys},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
