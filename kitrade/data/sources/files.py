"""A folder of CSV or Parquet OHLCV files, one per symbol.

Names: ``<SYMBOL>.csv`` / ``<SYMBOL>.parquet``, or ``<SYMBOL>_<TF>.csv`` to
give the timeframe (``GOOG_D1.csv``); without it the timeframe is inferred
from the median spacing of the file's timestamps. Columns: a timestamp
(``ts``/``time``/``timestamp``/``datetime``/``date``), ``open``, ``high``,
``low``, ``close`` and optionally ``volume``; naive timestamps are UTC.

A file is read whole and validated before anything of it is yielded, so a
bad file (missing column, non-numeric value, duplicate or unordered
timestamps) raises an error naming the file and its line, and nothing of it
is written. CSV values are read as text so the validator, not the CSV
parser, reports a bad value with its line (line 1 is the header).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd

from kitrade.config import TIMEFRAMES
from kitrade.data.sources.base import MarketDataSource, RawFrame
from kitrade.errors import NotFoundError, SourceDataError
from kitrade.schemas import SymbolIn

__all__ = ["FilesSource", "infer_timeframe"]

_log = logging.getLogger(__name__)
_NAME = re.compile(r"^(?P<symbol>[A-Z0-9.-]{1,20}?)(?:_(?P<tf>M1|M5|M15|M30|H1|H4|D1|W1|MN1))?$")
_SUFFIXES = (".csv", ".parquet")


def infer_timeframe(ts: pd.Series) -> str:
    """The timeframe whose length is nearest the median spacing of ``ts`` (log scale)."""
    import math

    spacing = pd.to_datetime(ts, utc=True).diff().dropna().median()
    if pd.isna(spacing) or spacing.total_seconds() <= 0:
        return "H1"
    secs = spacing.total_seconds()
    return min(TIMEFRAMES, key=lambda tf: abs(math.log(TIMEFRAMES[tf] / secs)))


class FilesSource(MarketDataSource):
    """OHLCV files in ``folder``."""

    name = "files"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _files(self) -> dict[str, tuple[Path, str | None]]:
        if not self.folder.is_dir():
            raise NotFoundError(f"files source: folder {self.folder} does not exist")
        found: dict[str, tuple[Path, str | None]] = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() not in _SUFFIXES or not path.is_file():
                continue
            match = _NAME.fullmatch(path.stem.upper())
            if match is None:
                _log.warning("files source: skipping %s (name is not a symbol)", path.name)
                continue
            found.setdefault(match["symbol"], (path, match["tf"]))
        return found

    def _read(self, path: Path) -> tuple[pd.DataFrame, int]:
        try:
            if path.suffix.lower() == ".parquet":
                return pd.read_parquet(path), 0
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]), 1
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceDataError(f"{path}: unreadable ({first})") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types for corrupt files
            raise SourceDataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None

    def _list_symbols(self) -> list[SymbolIn]:
        out = []
        for symbol, (path, tf) in self._files().items():
            if tf is None:
                try:
                    frame, _ = self._read(path)
                    cols = {c.lower(): c for c in frame.columns}
                    ts_col = next(
                        (
                            cols[c]
                            for c in ("ts", "time", "timestamp", "datetime", "date")
                            if c in cols
                        ),
                        None,
                    )
                    tf = infer_timeframe(frame[ts_col].head(1000)) if ts_col else "H1"
                except SourceDataError:
                    tf = "H1"  # sync will report the file's problem with its line
            out.append(
                SymbolIn(
                    symbol=symbol, timeframe=tf, source="files", description=f"from {path.name}"
                )
            )
        return out

    def _fetch(self, symbol: str, *, since: datetime | None) -> Iterator[RawFrame]:
        files = self._files()
        if symbol not in files:
            raise NotFoundError(
                f"files source: no {symbol}.csv or {symbol}.parquet in {self.folder}"
            )
        path, _ = files[symbol]
        frame, offset = self._read(path)
        yield RawFrame(frame, origin=str(path), row_offset=offset)
