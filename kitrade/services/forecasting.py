"""Forecasting use cases for callers outside the serving cluster.

The forecast deployment serves forecasts behind the gateway; a process of
its own (the CLI's ``analyze``) loads the active versions itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitrade.data.db import Database

__all__ = ["ForecastFn", "advance_calibration", "local_forecaster"]

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


def advance_calibration(db: Database, *, symbol: str, models: dict[str, Any] | None = None) -> int:
    """Take the outcomes of the bars that closed since ``symbol``'s calibration into it.

    Each new bar closes step ``j`` of the forecast made ``j`` bars before it: that step's
    score joins its window and adaptive conformal inference moves its level
    (``conformal.advance``); the state is stored per (active version, symbol), so a restart
    keeps it. The forecasts are recomputed from the active model and the bars (they depend
    on nothing else). A version without a calibration (trained before calibration existed)
    is left alone.

    Args:
        db: The store.
        symbol: The symbol whose bars arrived.
        models: Loaded models by artifact path, reused across calls.

    Returns:
        Outcomes taken in (0: nothing new, or nothing to calibrate).
    """
    import numpy as np
    import pandas as pd

    from kitrade.data.bars import get_bars, to_training_frame
    from kitrade.data.calibration import lock_calibration, save_calibration
    from kitrade.training import conformal
    from kitrade.training.registry import active_version

    with db.connection() as conn, conn.transaction():
        version = active_version(conn, symbol=symbol)
        if version is None:
            return 0
        stored = lock_calibration(conn, version=version.version, symbol=symbol)
        model = _model(version.artifact_path, models)
        data = stored or model.calibration.get(symbol)
        if data is None:
            return 0
        state = conformal.ConformalState.from_json(data)
        frame = to_training_frame(symbol, get_bars(conn, symbol=symbol))
        ds = pd.to_datetime(frame["ds"], utc=True)
        through = pd.Timestamp(state.through or version.data_end)
        first_new = int((ds <= through).sum())  # bars are sorted: those after are new
        y = frame["y"].to_numpy(dtype="float64")
        size = model.nf.models[0].input_size

        def raw_for(cutoffs: Any) -> dict[str, Any]:
            windows = np.lib.stride_tricks.sliding_window_view(y, size)[cutoffs - size + 1]
            return model.predict_tails(windows)

        taken = conformal.advance(state, y, first_new, raw_for, min_cutoff=size - 1)
        if taken == 0:
            return 0
        state.through = ds.iloc[-1].isoformat()
        save_calibration(
            conn,
            version=version.version,
            symbol=symbol,
            state=state.to_json(),
            summary=state.summary().model_dump(mode="json"),
            through=ds.iloc[-1].to_pydatetime(),
        )
    return taken


def _model(path: str, models: dict[str, Any] | None) -> Any:
    """The model at ``path``, loaded once per ``models`` cache (checksum verified)."""
    from pathlib import Path

    from kitrade.training.nhits import FittedModel  # torch + neuralforecast: only when used
    from kitrade.training.registry import verify_artifact

    cache = {} if models is None else models
    if path not in cache:
        verify_artifact(Path(path))
        cache[path] = FittedModel.load(Path(path))
    return cache[path]
