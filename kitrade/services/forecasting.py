"""Forecasting use cases for callers outside the serving cluster.

The forecast deployment serves forecasts behind the gateway; a process of
its own (the CLI's ``analyze``) loads the active versions itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitrade.data.db import Database

__all__ = ["ForecastFn", "local_forecaster"]

#: symbol -> the active model's forecast as a JSON dict (or None)
ForecastFn = Callable[[str], "dict[str, Any] | None"]


def local_forecaster(db: Database) -> ForecastFn:
    """Forecasts from the active model versions, loaded into this process."""
    from kitrade.training.engine import ForecastEngine  # torch + neuralforecast: only when used

    engine = ForecastEngine(db)
    engine.refresh()

    def forecast(symbol: str) -> dict[str, Any] | None:
        return engine.forecast(symbol).model_dump(mode="json")

    return forecast
