"""Bars: validation, streaming ingest, range/latest/resample queries.

Ingest path, per batch and in one transaction:

1. rows are encoded straight from numpy into PostgreSQL's binary COPY format
   (no per-row Python work);
2. under a per-symbol advisory lock, if the batch lies wholly after the
   symbol's last stored bar (the usual incremental sync) it is COPYed straight
   into ``bars`` — nothing can conflict;
3. otherwise it is COPYed into a temporary staging table and merged with one
   ``INSERT … ON CONFLICT (symbol, ts) DO UPDATE … WHERE values differ``, so
   re-ingesting the same bars changes nothing and a corrected bar overwrites
   the old one.

An optional ``on_batch`` callback runs inside the batch's transaction, so sync
state moves forward atomically with the data it describes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kitrade.data.notify import notify
from kitrade.errors import InvalidInputError, SourceDataError
from kitrade.timeframes import TIMEFRAMES

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "BAR_COLUMNS",
    "BatchResult",
    "IngestResult",
    "bar_stats",
    "close_after",
    "encode_copy_binary",
    "get_bars",
    "ingest_bars",
    "last_bar_ts",
    "latest_bars",
    "resample_bars",
    "to_training_frame",
    "validate_bars",
]

BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
_PRICE = ("open", "high", "low", "close")
_PG_EPOCH_NS = np.datetime64("2000-01-01T00:00:00", "ns").astype(np.int64)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
DEFAULT_BATCH_ROWS = 250_000


@dataclass(frozen=True)
class BatchResult:
    """What one committed batch did."""

    rows: int
    changed: int
    first_ts: datetime
    last_ts: datetime
    path: str  # "append" or "upsert"


@dataclass
class IngestResult:
    """Totals over all batches of one ingest call."""

    symbol: str
    rows: int = 0
    changed: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    batches: list[BatchResult] = field(default_factory=list)

    def add(self, batch: BatchResult) -> None:
        """Fold one batch into the totals."""
        self.rows += batch.rows
        self.changed += batch.changed
        self.first_ts = (
            batch.first_ts if self.first_ts is None else min(self.first_ts, batch.first_ts)
        )
        self.last_ts = batch.last_ts if self.last_ts is None else max(self.last_ts, batch.last_ts)
        self.batches.append(batch)


# --------------------------------------------------------------------------- validation
def validate_bars(frame: pd.DataFrame, *, origin: str, row_offset: int = 0) -> pd.DataFrame:
    """Check and normalise an OHLCV frame; raise naming ``origin`` and the row on error.

    Args:
        frame: columns ``ts, open, high, low, close`` and optionally ``volume``
            (case-insensitive; ``time``/``timestamp``/``date``/``datetime`` accepted for ts).
        origin: what to name in errors (a file path, ``upstream EURUSD``…).
        row_offset: added to the 1-based data row number in messages
            (a CSV's header makes data row 1 its line 2).

    Returns:
        A new frame with exactly ``BAR_COLUMNS``: ``ts`` UTC, floats, sorted, unique.

    Raises:
        SourceDataError: missing columns, unparsable or non-numeric values,
            duplicate or unordered timestamps, high below low.
    """
    cols = {str(c).strip().lower(): c for c in frame.columns}
    ts_col = _ts_column(cols, frame, origin)
    missing = [c for c in _PRICE if c not in cols]
    if missing:
        raise SourceDataError(
            f"{origin}: missing column(s) {missing}; expected ts, open, high, low, close[, volume]"
        )

    def row_no(i: int) -> int:
        return i + 1 + row_offset

    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    out["ts"] = _parse_ts(frame[ts_col].reset_index(drop=True), ts_col, origin, row_no)
    for name in (*_PRICE, "volume"):
        if name not in cols:
            out[name] = 0.0
        else:
            raw = frame[cols[name]].reset_index(drop=True)
            out[name] = _parse_numbers(raw, name, origin, row_no)
    _check_order(out, origin, row_no)
    hl = out["high"].to_numpy() < out["low"].to_numpy()
    if hl.any():
        i = int(np.argmax(hl))
        raise SourceDataError(
            f"{origin}: row {row_no(i)}: expected high >= low, was high={out['high'].iloc[i]} "
            f"low={out['low'].iloc[i]}"
        )
    return out


def _ts_column(cols: dict[str, object], frame: pd.DataFrame, origin: str) -> object:
    """The frame's timestamp column (the first alias present)."""
    for alias in ("ts", "time", "timestamp", "datetime", "date"):
        if alias in cols:
            return cols[alias]
    raise SourceDataError(
        f"{origin}: expected a timestamp column (ts, time, timestamp, datetime or date), "
        f"was columns {list(frame.columns)}"
    )


def _parse_ts(
    raw_ts: pd.Series, ts_col: object, origin: str, row_no: Callable[[int], int]
) -> pd.Series:
    """Timestamps as UTC ``datetime64[ns]``; the first unparsable one is an error."""
    if pd.api.types.is_datetime64_any_dtype(raw_ts):
        ts = raw_ts
    else:
        ts = pd.to_datetime(raw_ts, utc=True, errors="coerce", format="mixed")
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_localize("UTC")
    else:
        ts = ts.dt.tz_convert("UTC")
    bad = ts.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise SourceDataError(
            f"{origin}: row {row_no(i)}: expected a timestamp in column {ts_col!r}, "
            f"was {raw_ts.iloc[i]!r}"
        )
    return ts.astype("datetime64[ns, UTC]")


def _parse_numbers(
    raw: pd.Series, name: str, origin: str, row_no: Callable[[int], int]
) -> np.ndarray:
    """Finite floats; the first non-number is an error (a blank volume counts as 0)."""
    vals = pd.to_numeric(raw, errors="coerce")
    bad = vals.isna().to_numpy() | ~np.isfinite(vals.to_numpy(dtype="float64", na_value=np.nan))
    if name == "volume":
        # An empty volume means "not reported"; text in it is still an error.
        blank = raw.isna().to_numpy()
        bad &= ~blank
        vals = vals.fillna(0.0)
    if bad.any():
        i = int(np.argmax(bad))
        raise SourceDataError(
            f"{origin}: row {row_no(i)}: expected a number in column {name!r}, was {raw.iloc[i]!r}"
        )
    return vals.to_numpy(dtype="float64")


def _check_order(out: pd.DataFrame, origin: str, row_no: Callable[[int], int]) -> None:
    """Timestamps strictly increasing: name the first duplicate or step back."""
    if len(out) < 2:
        return
    diffs = np.diff(out["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64))
    if (diffs == 0).any():
        i = int(np.argmax(diffs == 0)) + 1
        raise SourceDataError(
            f"{origin}: row {row_no(i)}: duplicate timestamp {out['ts'].iloc[i].isoformat()} "
            f"(also row {row_no(i - 1)})"
        )
    if (diffs < 0).any():
        i = int(np.argmax(diffs < 0)) + 1
        raise SourceDataError(
            f"{origin}: row {row_no(i)}: timestamps out of order "
            f"({out['ts'].iloc[i].isoformat()} after {out['ts'].iloc[i - 1].isoformat()})"
        )


# --------------------------------------------------------------------------- COPY encoding
def encode_copy_binary(frame: pd.DataFrame, *, symbol: str | None = None) -> bytes:
    """Encode a validated bars frame as one PostgreSQL binary COPY stream.

    With ``symbol`` the stream has the columns ``symbol, ts, open…volume``
    (the ``bars`` table); without it ``ts, open…volume`` (the staging table).
    Vectorised with numpy: a big-endian structured array is the row format.
    """
    n = len(frame)
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    sym_bytes = b""
    if symbol is not None:
        sym_bytes = symbol.encode()
        fields += [("l_sym", ">i4"), ("sym", f"S{len(sym_bytes)}")]
    fields += [("l_ts", ">i4"), ("ts", ">i8")]
    for name in BAR_COLUMNS[1:]:
        fields += [(f"l_{name}", ">i4"), (name, ">f8")]
    arr = np.empty(n, dtype=np.dtype(fields))
    arr["nfields"] = len(BAR_COLUMNS) + (1 if symbol is not None else 0)
    if symbol is not None:
        arr["l_sym"] = len(sym_bytes)
        arr["sym"] = sym_bytes
    arr["l_ts"] = 8
    ts_ns = frame["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    arr["ts"] = (ts_ns - _PG_EPOCH_NS) // 1000
    for name in BAR_COLUMNS[1:]:
        arr[f"l_{name}"] = 8
        arr[name] = frame[name].to_numpy(dtype="float64")
    return _COPY_HEADER + arr.tobytes() + _COPY_TRAILER


# --------------------------------------------------------------------------- ingest
_UPSERT = """
INSERT INTO bars (symbol, ts, open, high, low, close, volume)
SELECT %(symbol)s, ts, open, high, low, close, volume FROM _bars_stage
ON CONFLICT (symbol, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume
WHERE (bars.open, bars.high, bars.low, bars.close, bars.volume)
    IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume)
"""


def _batches(
    frame: pd.DataFrame | Iterable[pd.DataFrame], batch_rows: int
) -> Iterator[pd.DataFrame]:
    frames = [frame] if isinstance(frame, pd.DataFrame) else frame
    for f in frames:
        for start in range(0, len(f), batch_rows):
            yield f.iloc[start : start + batch_rows]


def _ingest_batch(conn: psycopg.Connection, symbol: str, batch: pd.DataFrame) -> BatchResult:
    first = batch["ts"].iloc[0].to_pydatetime()
    last = batch["ts"].iloc[-1].to_pydatetime()
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (symbol,))
    row = conn.execute("SELECT max(ts) FROM bars WHERE symbol = %s", (symbol,)).fetchone()
    stored_last = row[0] if row else None
    with conn.cursor() as cur:
        if stored_last is None or stored_last < first:
            with cur.copy(
                "COPY bars (symbol, ts, open, high, low, close, volume) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.write(encode_copy_binary(batch, symbol=symbol))
            return BatchResult(len(batch), len(batch), first, last, "append")
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _bars_stage (ts timestamptz, open float8, "
            "high float8, low float8, close float8, volume float8) ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            "COPY _bars_stage (ts, open, high, low, close, volume) FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.write(encode_copy_binary(batch))
        cur.execute(_UPSERT, {"symbol": symbol})
        changed = cur.rowcount
        cur.execute("TRUNCATE _bars_stage")
    return BatchResult(len(batch), changed, first, last, "upsert")


def ingest_bars(
    conn: psycopg.Connection,
    *,
    symbol: str,
    bars: pd.DataFrame | Iterable[pd.DataFrame],
    batch_rows: int = DEFAULT_BATCH_ROWS,
    validated: bool = False,
    origin: str | None = None,
    on_batch: Callable[[psycopg.Connection, BatchResult], None] | None = None,
) -> IngestResult:
    """Stream bars of one symbol into the store, one committed transaction per batch.

    Args:
        conn: an idle connection (no open transaction), so each batch commits.
        symbol: the symbol the bars belong to.
        bars: one frame or an iterable of frames (streamed: never concatenated).
        batch_rows: rows per COPY/transaction.
        validated: skip ``validate_bars`` (the caller already ran it).
        origin: named in validation errors.
        on_batch: called inside each batch's transaction after the write.

    Returns:
        Totals; ``changed`` counts inserted plus actually modified rows.
    """
    if conn.info.transaction_status != 0:  # psycopg.pq.TransactionStatus.IDLE
        raise InvalidInputError("ingest_bars needs an idle connection (no open transaction)")
    result = IngestResult(symbol=symbol)
    frames = (
        bars
        if validated
        else (
            validate_bars(f, origin=origin or f"bars for {symbol}")
            for f in ([bars] if isinstance(bars, pd.DataFrame) else bars)
        )
    )
    for batch in _batches(frames, batch_rows):
        if batch.empty:
            continue
        with conn.transaction():
            res = _ingest_batch(conn, symbol, batch)
            if res.changed:
                notify(conn, "bars", symbol)  # delivered on commit (forecast caches)
            if on_batch is not None:
                on_batch(conn, res)
        result.add(res)
    return result


# --------------------------------------------------------------------------- queries
def _frame(rows: list[tuple], columns: tuple[str, ...] = BAR_COLUMNS) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    for c in columns[1:]:
        df[c] = df[c].astype("float64")
    return df


def get_bars(
    conn: psycopg.Connection,
    *,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """A symbol's bars with ``start <= ts < end`` in time order (at most ``limit``)."""
    sql = "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol = %s"
    params: list[object] = [symbol]
    if start is not None:
        sql += " AND ts >= %s"
        params.append(start)
    if end is not None:
        sql += " AND ts < %s"
        params.append(end)
    sql += " ORDER BY ts"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(int(limit))
    return _frame(conn.execute(sql, params).fetchall())


def latest_bars(
    conn: psycopg.Connection, *, symbol: str, n: int, until: datetime | None = None
) -> pd.DataFrame:
    """The last ``n`` bars of a symbol (with ``ts <= until`` if given), oldest first."""
    if n < 1:
        raise InvalidInputError(f"expected n >= 1, was {n}")
    if until is None:
        rows = conn.execute(
            "SELECT * FROM (SELECT ts, open, high, low, close, volume FROM bars WHERE symbol = %s"
            " ORDER BY ts DESC LIMIT %s) t ORDER BY ts",
            (symbol, int(n)),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT * FROM (SELECT ts, open, high, low, close, volume FROM bars WHERE symbol = %s"
            " AND ts <= %s ORDER BY ts DESC LIMIT %s) t ORDER BY ts",
            (symbol, until, int(n)),
        ).fetchall()
    return _frame(rows)


def last_bar_ts(conn: psycopg.Connection, *, symbol: str) -> datetime | None:
    """Time of the symbol's newest bar (None without bars)."""
    row = conn.execute("SELECT max(ts) FROM bars WHERE symbol = %s", (symbol,)).fetchone()
    return row[0] if row else None


def close_after(
    conn: psycopg.Connection, *, symbol: str, after: datetime, bars: int
) -> tuple[datetime, float] | None:
    """``(ts, close)`` of the ``bars``-th bar after ``after`` (None until it exists)."""
    row = conn.execute(
        "SELECT ts, close FROM bars WHERE symbol = %s AND ts > %s ORDER BY ts OFFSET %s LIMIT 1",
        (symbol, after, bars - 1),
    ).fetchone()
    return (row[0], float(row[1])) if row else None


def resample_bars(
    conn: psycopg.Connection,
    *,
    symbol: str,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Aggregate a symbol's bars to a coarser timeframe in SQL (first/max/min/last/sum).

    Buckets are aligned to UTC: minutes/hours/days from midnight, weeks from
    Monday, months to calendar months.
    """
    if timeframe not in TIMEFRAMES:
        raise InvalidInputError(f"timeframe: expected one of {list(TIMEFRAMES)}, was {timeframe!r}")
    if timeframe == "MN1":
        bucket = "date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        params: list[object] = []
    else:
        bucket = "date_bin(%s::interval, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00')"
        params = [f"{TIMEFRAMES[timeframe]} seconds"]
    where = "symbol = %s"
    params.append(symbol)
    if start is not None:
        where += " AND ts >= %s"
        params.append(start)
    if end is not None:
        where += " AND ts < %s"
        params.append(end)
    sql = f"""
        SELECT {bucket} AS bucket,
               (array_agg(open ORDER BY ts))[1], max(high), min(low),
               (array_agg(close ORDER BY ts DESC))[1], sum(volume)
        FROM bars WHERE {where} GROUP BY bucket ORDER BY bucket
    """
    return _frame(conn.execute(sql, params).fetchall())


@dataclass(frozen=True)
class BarStats:
    """Count and time range of a symbol's bars."""

    symbol: str
    count: int
    first_ts: datetime | None
    last_ts: datetime | None


def bar_stats(conn: psycopg.Connection, *, symbol: str | None = None) -> list[BarStats]:
    """Per-symbol count/first/last (all symbols, or one)."""
    sql = "SELECT symbol, count(*), min(ts), max(ts) FROM bars"
    params: list[object] = []
    if symbol is not None:
        sql += " WHERE symbol = %s"
        params.append(symbol)
    sql += " GROUP BY symbol ORDER BY symbol"
    return [BarStats(*r) for r in conn.execute(sql, params).fetchall()]


def to_training_frame(symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
    """The canonical long frame (``unique_id``, ``ds``, ``y``) from a symbol's bars (y = close)."""
    out = pd.DataFrame(
        {"unique_id": symbol, "ds": bars["ts"].to_numpy(), "y": bars["close"].to_numpy()}
    )
    out["ds"] = pd.to_datetime(out["ds"], utc=True)
    if not np.isfinite(out["y"].to_numpy(dtype="float64")).all():
        raise InvalidInputError(f"{symbol}: close has missing values")
    return out
