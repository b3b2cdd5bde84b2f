"""The real sample bars bundled with the ``backtesting`` package."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from kitrade.data.sources.base import MarketDataSource, RawFrame
from kitrade.errors import NotFoundError
from kitrade.schemas import SymbolIn

__all__ = ["SAMPLE_SYMBOLS", "SampleSource"]

#: symbol -> (timeframe, asset class, description)
SAMPLE_SYMBOLS: dict[str, tuple[str, str, str]] = {
    "EURUSD": ("H1", "fx", "Euro / US dollar, hourly, 2017-04 to 2018-02 (backtesting sample)"),
    "GOOG": ("D1", "stock", "Alphabet (Google), daily, 2004 to 2013 (backtesting sample)"),
    "BTCUSD": ("MN1", "crypto", "Bitcoin / US dollar, monthly, 2012 to 2024 (backtesting sample)"),
}


class SampleSource(MarketDataSource):
    """EURUSD hourly, GOOG daily and BTCUSD monthly, as shipped by ``backtesting``."""

    name = "sample"

    def _list_symbols(self) -> list[SymbolIn]:
        return [
            SymbolIn.model_validate(
                {
                    "symbol": s,
                    "timeframe": tf,
                    "asset_class": ac,
                    "description": d,
                    "source": "sample",
                }
            )
            for s, (tf, ac, d) in SAMPLE_SYMBOLS.items()
        ]

    def _fetch(self, symbol: str, *, since: datetime | None) -> Iterator[RawFrame]:
        if symbol not in SAMPLE_SYMBOLS:
            raise NotFoundError(
                f"sample source: expected one of {sorted(SAMPLE_SYMBOLS)}, was {symbol!r}"
            )
        import backtesting.test as bt  # backtesting pulls in bokeh: only the sample source reads its data

        frame = getattr(bt, symbol).copy()
        frame.index.name = "ts"
        yield RawFrame(frame.reset_index(), origin=f"backtesting sample {symbol}")
