"""The one definition of the bar timeframes kitrade knows.

Everything else (settings, request schemas, the model spec, SQL resampling, file-source
inference, the CLI's help) reads these names from here.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["TIMEFRAMES", "TIMEFRAME_NAMES", "Timeframe", "pandas_freq"]

#: A bar timeframe, as a type for pydantic models and signatures.
Timeframe = Literal["M1", "M5", "M15", "M30", "H1", "H4", "D1", "W1", "MN1"]

#: The timeframes, shortest first.
TIMEFRAME_NAMES: tuple[str, ...] = get_args(Timeframe)

#: Each timeframe's nominal length in seconds (MN1 is a nominal 30 days; resampling uses
#: calendar months).
TIMEFRAMES: dict[str, int] = dict(
    zip(TIMEFRAME_NAMES, (60, 300, 900, 1800, 3600, 14400, 86400, 604800, 2_592_000), strict=True)
)

_PANDAS_FREQ: dict[str, str] = dict(
    zip(TIMEFRAME_NAMES, ("min", "5min", "15min", "30min", "h", "4h", "D", "W", "ME"), strict=True)
)


def pandas_freq(timeframe: str) -> str:
    """The nominal pandas frequency alias of ``timeframe`` (``H1`` -> ``"h"``).

    Raises:
        KeyError: ``timeframe`` is not one of ``TIMEFRAME_NAMES``.
    """
    return _PANDAS_FREQ[timeframe]
