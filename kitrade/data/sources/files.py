"""A folder of CSV or Parquet OHLCV files, one per symbol.

File names (case-insensitive; the symbol is upper-cased and must match
``^[A-Z0-9._-]{1,20}$``):

- ``<SYMBOL>.csv`` / ``<SYMBOL>.parquet``: the timeframe is inferred from the
  median spacing of the file's first 1,000 timestamps, mapped to the nearest
  of ``M1 M5 M15 M30 H1 H4 D1 W1 MN1`` on a log scale (so daily bars with
  weekend gaps are still ``D1``);
- ``<SYMBOL>_<TIMEFRAME>.csv`` / ``.parquet`` (``GOOG_D1.csv``): the name gives
  the timeframe.

Other names are skipped with a logged warning; hidden files (``.…``) and
other suffixes are ignored. If two files give the same symbol, the first in
case-insensitive name order wins (``X.csv`` before ``X.parquet``) and the
other is reported.

Columns: a timestamp (``ts``/``time``/``timestamp``/``datetime``/``date``;
naive timestamps are UTC), ``open``, ``high``, ``low``, ``close`` and
optionally ``volume`` (blank = not reported). A Parquet file may keep the
timestamp as its named index.

A file is read whole and validated before anything of it is yielded, so a
bad file raises ``SourceDataError`` naming the file and the place, and
nothing of it is written:

- CSV: every value is read as text, so the validator (not the CSV parser)
  reports a bad value, and it names the **line** of the file (line 1 is the
  header; ``row_offset=1``). Blank lines keep their line numbers (a blank line
  inside the data is reported; trailing blank lines are ignored). Line numbers
  assume one record per line (no quoted line breaks).
- Parquet: errors name the 1-based data **row** (``row_offset=0``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from kitrade.data.sources.base import MarketDataSource, RawFrame
from kitrade.errors import NotFoundError, SourceDataError
from kitrade.schemas import SYMBOL_PATTERN, SymbolIn
from kitrade.timeframes import TIMEFRAMES

__all__ = ["FilesSource", "infer_timeframe"]

_log = logging.getLogger(__name__)
_SYMBOL = re.compile(SYMBOL_PATTERN)
_WITH_TF = re.compile(rf"^(?P<symbol>.+)_(?P<tf>{'|'.join(TIMEFRAMES)})$")
_SUFFIXES = (".csv", ".parquet")
_TS_ALIASES = ("ts", "time", "timestamp", "datetime", "date")
_HEAD_ROWS = 1000  # timestamps looked at to infer a timeframe


def infer_timeframe(ts: pd.Series, *, default: str = "H1") -> str:
    """The timeframe nearest (on a log scale) to the median spacing of ``ts``.

    Args:
        ts: timestamps (datetimes or text); unparsable ones are ignored.
        default: returned when fewer than two distinct timestamps parse.

    Returns:
        One of ``M1 M5 M15 M30 H1 H4 D1 W1 MN1``.
    """
    parsed = pd.to_datetime(pd.Series(ts), utc=True, errors="coerce", format="mixed")
    spacing = parsed.dropna().sort_values().diff()
    spacing = spacing[spacing > pd.Timedelta(0)]
    if spacing.empty:
        return default
    secs = spacing.median().total_seconds()
    return min(TIMEFRAMES, key=lambda tf: abs(math.log(TIMEFRAMES[tf] / secs)))


def _parse_name(path: Path) -> tuple[str, str | None] | None:
    """``(symbol, timeframe or None)`` from a file name, or None if it is not a symbol."""
    stem = path.stem.upper()
    match = _WITH_TF.fullmatch(stem)
    if match and _SYMBOL.fullmatch(match["symbol"]):
        return match["symbol"], match["tf"]
    if _SYMBOL.fullmatch(stem):
        return stem, None
    return None


def _read_csv(path: Path, *, nrows: int | None = None) -> pd.DataFrame:
    # header=None: the header is data row 0, so a data line with more fields
    # than the header is a ParserError naming its line instead of pandas
    # silently turning leading columns into an index. Blank lines are kept so
    # row numbers stay line numbers.
    raw = pd.read_csv(
        path,
        header=None,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        skip_blank_lines=False,
        encoding="utf-8-sig",  # a spreadsheet's byte-order mark must not hide the header
        nrows=None if nrows is None else nrows + 1,
    )
    header = ["" if pd.isna(c) else str(c).strip() for c in raw.iloc[0]]
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = header
    filled = (~frame.isna().all(axis=1)).to_numpy()
    end = int(filled.nonzero()[0][-1]) + 1 if filled.any() else 0
    return frame.iloc[:end]


def _read_parquet(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    if not isinstance(frame.index, pd.RangeIndex) and frame.index.name is not None:
        frame = frame.reset_index()  # the timestamp kept as a named index
    return frame


def _read_parquet_ts_head(path: Path) -> pd.Series | None:
    with pq.ParquetFile(path) as pf:
        by_lower = {n.lower(): n for n in pf.schema_arrow.names}
        ts_col = next((by_lower[a] for a in _TS_ALIASES if a in by_lower), None)
        if ts_col is None:
            return None
        batch = next(pf.iter_batches(batch_size=_HEAD_ROWS, columns=[ts_col]), None)
    return None if batch is None else batch.column(0).to_pandas()


def _unreadable(path: Path, exc: Exception) -> SourceDataError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return SourceDataError(f"{path}: unreadable ({first})")


class FilesSource(MarketDataSource):
    """OHLCV files in ``folder``, one per symbol (see the module docstring).

    Args:
        folder: the folder holding ``<SYMBOL>[_<TIMEFRAME>].csv|parquet`` files.
    """

    name = "files"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _files(self) -> dict[str, tuple[Path, str | None]]:
        if not self.folder.is_dir():
            raise NotFoundError(f"files source: folder {self.folder} does not exist")
        found: dict[str, tuple[Path, str | None]] = {}
        for path in sorted(self.folder.iterdir(), key=lambda p: (p.name.lower(), p.name)):
            if (
                path.name.startswith(".")
                or path.suffix.lower() not in _SUFFIXES
                or not path.is_file()
            ):
                continue
            parsed = _parse_name(path)
            if parsed is None:
                _log.warning(
                    "files source: skipping %s: expected <SYMBOL>[_<TIMEFRAME>]%s with a symbol "
                    "of 1-20 of A-Z 0-9 . _ -",
                    path,
                    path.suffix,
                )
                continue
            symbol, tf = parsed
            if symbol in found:
                _log.warning(
                    "files source: skipping %s: %s is already read from %s",
                    path,
                    symbol,
                    found[symbol][0].name,
                )
                continue
            found[symbol] = (path, tf)
        return found

    def _read(self, path: Path) -> RawFrame:
        try:
            if path.suffix.lower() == ".parquet":
                return RawFrame(_read_parquet(path), origin=str(path), row_offset=0)
            return RawFrame(_read_csv(path), origin=str(path), row_offset=1)
        except (OSError, ValueError) as exc:
            # pandas' parser/empty-data errors, UnicodeDecodeError and pyarrow's
            # ArrowInvalid are all ValueErrors; ArrowIOError is an OSError.
            raise _unreadable(path, exc) from None

    def _timeframe_of(self, path: Path) -> str:
        try:
            if path.suffix.lower() == ".parquet":
                ts = _read_parquet_ts_head(path)
            else:
                head = _read_csv(path, nrows=_HEAD_ROWS)
                by_lower = {str(c).lower(): c for c in head.columns}
                ts_col = next((by_lower[a] for a in _TS_ALIASES if a in by_lower), None)
                ts = None if ts_col is None else head[ts_col]
        except (OSError, ValueError):
            ts = None  # fetching the symbol reports the file's problem with its line
        return "H1" if ts is None else infer_timeframe(ts)

    def _list_symbols(self) -> list[SymbolIn]:
        return [
            SymbolIn.model_validate(
                {
                    "symbol": symbol,
                    "timeframe": tf or self._timeframe_of(path),
                    "source": "files",
                    "description": f"from {path.name}",
                }
            )
            for symbol, (path, tf) in self._files().items()
        ]

    def _fetch(self, symbol: str, *, since: datetime | None) -> Iterator[RawFrame]:
        files = self._files()
        if symbol not in files:
            raise NotFoundError(
                f"files source: no {symbol}.csv or {symbol}.parquet "
                f"(or {symbol}_<TIMEFRAME>.csv) in {self.folder}"
            )
        # One frame for the whole file: validation sees all of it before any is written.
        yield self._read(files[symbol][0])
