"""The market-data source interface and its shared template.

``MarketDataSource.fetch`` is the template method: it calls the leaf's
``_fetch`` and validates every frame (naming the file/upstream and row on
error), keeps only bars after ``since`` and yields them in time order.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from datetime import datetime

import pandas as pd

from kitrade.data.bars import validate_bars
from kitrade.schemas import SymbolIn, validate_symbol

__all__ = ["MarketDataSource", "RawFrame"]


class RawFrame:
    """A frame as a leaf read it, with where it came from (for error messages)."""

    __slots__ = ("frame", "origin", "row_offset")

    def __init__(self, frame: pd.DataFrame, origin: str, row_offset: int = 0) -> None:
        self.frame = frame
        self.origin = origin
        self.row_offset = row_offset


class MarketDataSource(abc.ABC):
    """Where bars come from. Leaves implement ``_list_symbols`` and ``_fetch``."""

    #: short name recorded in sync state (``sample``, ``files``, ``http``)
    name: str = "source"

    def list_symbols(self) -> list[SymbolIn]:
        """Symbols this source offers."""
        return self._list_symbols()

    def fetch(self, symbol: str, *, since: datetime | None = None) -> Iterator[pd.DataFrame]:
        """Validated bars of ``symbol`` with ``ts > since``, as a stream of frames.

        Raises:
            SourceDataError: a frame is malformed (nothing of it is yielded).
            NotFoundError: the source has no such symbol.
            UpstreamError: a remote source failed.
        """
        validate_symbol(symbol)
        for raw in self._fetch(symbol, since=since):
            frame = validate_bars(raw.frame, origin=raw.origin, row_offset=raw.row_offset)
            if since is not None:
                frame = frame[frame["ts"] > pd.Timestamp(since).tz_convert("UTC")]
            if not frame.empty:
                yield frame.reset_index(drop=True)

    @abc.abstractmethod
    def _list_symbols(self) -> list[SymbolIn]: ...

    @abc.abstractmethod
    def _fetch(self, symbol: str, *, since: datetime | None) -> Iterator[RawFrame]: ...

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op unless a leaf holds resources
        """Release resources (HTTP clients)."""
