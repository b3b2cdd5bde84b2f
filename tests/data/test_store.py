"""Migrations, COPY ingest, upsert and queries against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
import pytest

from kitrade.data.bars import (
    bar_stats,
    encode_copy_binary,
    get_bars,
    ingest_bars,
    latest_bars,
    resample_bars,
    validate_bars,
)
from kitrade.data.db import conninfo_for
from kitrade.data.migrations import (
    MIGRATIONS,
    TIMESCALE_BARS_SQL,
    applied_versions,
    get_meta,
    migrate,
)
from kitrade.errors import InvalidInputError, SourceDataError


def hourly(n: int, start: str = "2024-01-01", base: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    close = base + np.cumsum(rng.normal(0, 0.001, n))
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "open": close - 0.0005,
            "high": close + 0.001,
            "low": close - 0.001,
            "close": close,
            "volume": rng.integers(1, 1000, n).astype(float),
        }
    )


def test_migrations_run_twice_change_nothing(module_settings):
    with psycopg.connect(conninfo_for(module_settings), autocommit=True) as conn:
        before = applied_versions(conn)
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='public' ORDER BY 1"
        ).fetchall()
        assert migrate(conn) == []
        assert migrate(conn) == []
        assert applied_versions(conn) == before == sorted(MIGRATIONS)
        assert (
            conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public' ORDER BY 1"
            ).fetchall()
            == tables
        )
        assert {"bars", "symbols", "strategies", "sync_state", "events"} <= {t[0] for t in tables}


def test_without_timescaledb_bars_falls_back_to_a_plain_indexed_table(db):
    """The embedded PostgreSQL has no TimescaleDB (no registry reachable here ships one for
    it): the hypertable branch is refused and the fallback runs, on purpose. The branch that
    succeeds is untested here (README, Database)."""
    with db.connection() as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        assert available is None, "timescaledb is installed here: test the hypertable branch"
        assert get_meta(conn, "bars_storage") == "table"
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'bars' AND indexname = 'bars_ts'"
        ).fetchall()
        assert indexes == [("CREATE INDEX bars_ts ON public.bars USING btree (ts DESC)",)]
        assert conn.execute("SELECT to_regnamespace('_timescaledb_catalog')").fetchone() == (None,)


@pytest.mark.parametrize(
    ("statement", "refusal"),
    list(
        zip(
            TIMESCALE_BARS_SQL,
            [
                psycopg.errors.FeatureNotSupported,  # extension "timescaledb" is not available
                psycopg.errors.UndefinedFunction,  # create_hypertable(...) does not exist
                psycopg.errors.InvalidParameterValue,  # unrecognized parameter namespace
                psycopg.errors.UndefinedFunction,  # add_compression_policy(...) does not exist
            ],
            strict=True,
        )
    ),
    ids=["create-extension", "create-hypertable", "compress", "compression-policy"],
)
def test_each_timescaledb_statement_is_refused_without_the_extension(db, statement, refusal):
    """Each statement of the hypertable branch, run alone, fails on plain PostgreSQL, so the
    migration falls back whichever statement a partial install would stop at."""
    with db.connection() as conn, pytest.raises(refusal), conn.transaction(force_rollback=True):
        conn.execute(statement)


def test_bars_primary_key_and_types(db):
    with db.connection() as conn:
        pk = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'bars'::regclass AND i.indisprimary"
        ).fetchall()
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name='bars'"
            ).fetchall()
        )
    assert {r[0] for r in pk} == {"symbol", "ts"}
    assert types["ts"] == "timestamp with time zone"
    assert all(types[c] == "double precision" for c in ("open", "high", "low", "close", "volume"))


def test_binary_copy_encoding_round_trips_exact_values(clean_db):
    df = validate_bars(hourly(7), origin="t")
    df.loc[3, "close"] = 1.0000000000000002  # one ulp above 1: survives binary, not %g text
    with clean_db.connection() as conn:
        conn.commit()
        ingest_bars(conn, symbol="EXACT", bars=df)
        got = get_bars(conn, symbol="EXACT")
    pd.testing.assert_frame_equal(got, df, check_dtype=False)
    assert encode_copy_binary(df)[:11] == b"PGCOPY\n\xff\r\n\x00"


def test_ingest_is_idempotent_and_corrections_overwrite(clean_db):
    df = hourly(1000)
    with clean_db.connection() as conn:
        conn.commit()
        first = ingest_bars(conn, symbol="EURUSD", bars=df, batch_rows=300)
        assert (first.rows, first.changed) == (1000, 1000)
        assert [b.path for b in first.batches] == ["append"] * 4
        again = ingest_bars(conn, symbol="EURUSD", bars=df, batch_rows=300)
        assert (again.rows, again.changed) == (1000, 0)
        fixed = df.iloc[[10, 11]].copy()
        fixed["close"] = 9.5
        res = ingest_bars(conn, symbol="EURUSD", bars=fixed)
        assert res.changed == 2 and res.batches[0].path == "upsert"
        got = get_bars(conn, symbol="EURUSD")
    assert len(got) == 1000
    assert got["close"].iloc[10] == 9.5 and got["close"].iloc[11] == 9.5
    assert got["close"].iloc[12] == pytest.approx(df["close"].iloc[12])


def test_ingest_overlapping_batch_merges_new_and_old(clean_db):
    df = hourly(100)
    with clean_db.connection() as conn:
        conn.commit()
        ingest_bars(conn, symbol="X", bars=df.iloc[:60])
        res = ingest_bars(conn, symbol="X", bars=df.iloc[50:])
        assert res.changed == 40  # 10 identical, 40 new
        assert bar_stats(conn, symbol="X")[0].count == 100


def test_failed_batch_rolls_back_whole_batch(clean_db):
    df = hourly(10)
    with clean_db.connection() as conn:
        conn.commit()

        def boom(c, batch):
            raise RuntimeError("crash inside the batch")

        with pytest.raises(RuntimeError):
            ingest_bars(conn, symbol="X", bars=df, on_batch=boom)
        assert bar_stats(conn, symbol="X") == []


def test_ingest_refuses_connection_inside_transaction(clean_db):
    with clean_db.connection() as conn:
        conn.execute("SELECT 1")
        with pytest.raises(InvalidInputError, match="idle connection"):
            ingest_bars(conn, symbol="X", bars=hourly(3))


def test_range_latest_and_resample_queries(clean_db):
    df = hourly(72, start="2024-03-01")
    with clean_db.connection() as conn:
        conn.commit()
        ingest_bars(conn, symbol="EURUSD", bars=df)
        rng = get_bars(
            conn,
            symbol="EURUSD",
            start=datetime(2024, 3, 1, 10, tzinfo=UTC),
            end=datetime(2024, 3, 1, 14, tzinfo=UTC),
        )
        last = latest_bars(conn, symbol="EURUSD", n=5)
        daily = resample_bars(conn, symbol="EURUSD", timeframe="D1")
        four = resample_bars(conn, symbol="EURUSD", timeframe="H4")
        with pytest.raises(InvalidInputError):
            resample_bars(conn, symbol="EURUSD", timeframe="H2")
    assert list(rng["ts"].dt.hour) == [10, 11, 12, 13]
    assert list(last["ts"]) == list(df["ts"].iloc[-5:])
    assert len(daily) == 3
    day0 = df.iloc[:24]
    assert daily["open"].iloc[0] == pytest.approx(day0["open"].iloc[0])
    assert daily["close"].iloc[0] == pytest.approx(day0["close"].iloc[-1])
    assert daily["high"].iloc[0] == pytest.approx(day0["high"].max())
    assert daily["low"].iloc[0] == pytest.approx(day0["low"].min())
    assert daily["volume"].iloc[0] == pytest.approx(day0["volume"].sum())
    assert len(four) == 18 and (four["ts"].dt.hour % 4 == 0).all()


def test_validate_bars_names_origin_and_row():
    df = hourly(5)
    df["close"] = df["close"].astype(object)
    df.loc[3, "close"] = "abc"
    with pytest.raises(
        SourceDataError, match=r"f\.csv: row 5: expected a number in column 'close'"
    ):
        validate_bars(df, origin="f.csv", row_offset=1)
    dup = hourly(5)
    dup.loc[2, "ts"] = dup.loc[1, "ts"]
    with pytest.raises(SourceDataError, match="row 3: duplicate timestamp"):
        validate_bars(dup, origin="f")
    unordered = hourly(5).iloc[[0, 2, 1, 3, 4]]
    with pytest.raises(SourceDataError, match="row 3: timestamps out of order"):
        validate_bars(unordered, origin="f")
    with pytest.raises(SourceDataError, match="missing column"):
        validate_bars(hourly(3).drop(columns=["low"]), origin="f")
