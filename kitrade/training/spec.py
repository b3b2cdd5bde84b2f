"""NHITS configuration as data: per-timeframe defaults, minimum lengths, the Tune search space.

No torch, no Ray: these are plain models and dicts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kitrade.errors import InvalidInputError
from kitrade.timeframes import TIMEFRAME_NAMES as TIMEFRAMES
from kitrade.timeframes import pandas_freq

__all__ = [
    "SEARCH_SPACE",
    "TIMEFRAMES",
    "TIMEFRAME_DEFAULTS",
    "NHITSConfig",
    "default_config",
    "freq_for",
    "min_bars",
]


class NHITSConfig(BaseModel):
    """Everything that defines one NHITS training and its evaluation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: int = Field(24, ge=1, le=1000)
    input_size: int = Field(96, ge=2, le=10_000)
    max_steps: int = Field(300, ge=1, le=100_000)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(32, ge=1, le=4096)
    windows_batch_size: int = Field(256, ge=1, le=65_536)
    n_pool_kernel_size: tuple[int, int, int] = (2, 2, 1)
    n_freq_downsample: tuple[int, int, int] = (4, 2, 1)
    mlp_units: int = Field(256, ge=4, le=4096, description="width of each block's 2 MLP layers")
    dropout: float = Field(0.0, ge=0, lt=1)
    scaler_type: str = Field("robust", pattern="^(robust|standard|minmax|identity)$")
    val_size: int = Field(24, ge=1, description="bars held out for early stopping")
    early_stop_patience_steps: int = Field(3, ge=-1)
    val_check_steps: int = Field(25, ge=1)
    levels: tuple[int, ...] = (80, 95)
    random_seed: int = 1
    cv_windows: int = Field(
        250, ge=1, le=10_000, description="rolling forecast origins of the evaluation"
    )
    step_size: int = Field(1, ge=1, description="bars between evaluation origins")
    season_length: int = Field(24, ge=1, description="for the seasonal-naive baseline")
    target: Literal["level", "log_return"] = Field(
        "level",
        description="`level`: the network forecasts prices; `log_return`: it forecasts log "
        "prices, i.e. cumulative log returns from its input window's level (the window scaler "
        "removes the level), converted back to price levels and bands (prices must be > 0)",
    )
    conformal_gamma: float = Field(
        0.02, ge=0, le=0.5, description="adaptive conformal step size of the band calibration"
    )
    conformal_window: int = Field(
        500, ge=10, le=100_000, description="recent conformity scores kept per forecast step"
    )

    @model_validator(mode="after")
    def _check(self) -> NHITSConfig:
        if sorted(self.levels) != [80, 95]:
            raise ValueError(f"levels: expected (80, 95), was {self.levels}")
        return self

    @property
    def test_size(self) -> int:
        """Bars covered by the rolling-origin evaluation."""
        return self.horizon + self.step_size * (self.cv_windows - 1)


def min_bars(config: NHITSConfig, *, evaluate: bool = True) -> int:
    """Shortest series ``config`` can train (and, by default, evaluate) on.

    The model trains on the series minus the evaluation part (``test_size``),
    holds out ``val_size`` of that for early stopping, and needs at least one
    full window of ``input_size + horizon`` to learn from::

        min_bars = input_size + horizon + val_size + test_size
        test_size = horizon + step_size * (cv_windows - 1)

    With ``evaluate=False`` (a plain ``fit`` on the whole series) the
    ``test_size`` term is left out. neuralforecast itself accepts shorter
    series (it pads incomplete windows with an availability mask); this is
    kitrade's floor so that every model has seen at least one real window.
    """
    train = config.input_size + config.horizon + config.val_size
    return train + config.test_size if evaluate else train


def freq_for(timeframe: str) -> str:
    """The nominal pandas frequency alias of ``timeframe`` (``H1`` -> ``"h"``).

    Nominal only: market bars have gaps (weekends, holidays; GOOG daily bars
    skip weekends, BTCUSD daily bars do not), so the model never builds a
    calendar from this alias. ``nhits`` indexes bars 0..n-1 (neuralforecast
    with integer ``ds`` and ``freq=1``) and extrapolates future timestamps
    from the series' own spacing and trading slots (``nhits.future_timestamps``).
    Use this alias for resampling and display.
    """
    if timeframe not in TIMEFRAMES:
        raise InvalidInputError(f"timeframe: expected one of {list(TIMEFRAMES)}, was {timeframe!r}")
    return pandas_freq(timeframe)


#: per timeframe: horizon, input size, season; the evaluation's origins.
#: Seasons: a trading day of bars for intraday (FX trades 24 h; an hour for M1,
#: whose day is longer than its input window), a trading week for D1 (5; for
#: crypto daily bars pass ``season_length=7``), a year for W1 and MN1.
#: Evaluation: ``cv_windows`` rolling origins one bar apart (``step_size=1``)
#: over the held-out tail: 250 by default, 104 weekly, 36 monthly; fewer when
#: the series is short (``default_config`` keeps the tail to a quarter of it).
TIMEFRAME_DEFAULTS: dict[str, dict[str, Any]] = {
    "M1": {"horizon": 60, "input_size": 240, "season_length": 60},
    "M5": {"horizon": 48, "input_size": 288, "season_length": 288},
    "M15": {"horizon": 32, "input_size": 192, "season_length": 96},
    "M30": {"horizon": 48, "input_size": 192, "season_length": 48},
    "H1": {"horizon": 24, "input_size": 96, "season_length": 24},
    "H4": {"horizon": 24, "input_size": 96, "season_length": 6},
    "D1": {"horizon": 24, "input_size": 60, "season_length": 5},
    "W1": {"horizon": 12, "input_size": 52, "season_length": 52, "cv_windows": 104},
    "MN1": {
        "horizon": 6,
        "input_size": 24,
        "season_length": 12,
        "cv_windows": 36,
        "max_steps": 200,
        "val_check_steps": 20,
    },
}


#: Series per training step of a shared model (neuralforecast's ``batch_size``).
#: A step draws ``windows_batch_size`` windows from that many series, after
#: unfolding every window of each: its cost grows with series x bars, not with
#: the windows it keeps. Measured on 16 H1 series of 5,000 bars (2 threads):
#: 75 ms a step with 32 or 16 series, 40 ms with 8, 25 ms with 4 (one series:
#: 24 ms), mean rMAE 1.004 / 1.004 / 1.006 / 1.001. A symbol's own model has
#: one series, so this changes nothing for it.
SHARED_BATCH_SIZE = 4


def default_config(timeframe: str, n_bars: int | None = None, **overrides: Any) -> NHITSConfig:
    """The configuration for a symbol of ``timeframe`` with ``n_bars`` bars.

    ``val_size`` follows the horizon. When ``n_bars`` is known, the evaluation
    keeps at most a quarter of the series as its held-out tail: the number of
    origins (``cv_windows``, unless overridden) shrinks to fit, not below 2.
    When ``n_bars`` is short for the default input size, the input size
    shrinks (not below two horizons) so a short series like 156 monthly bars
    still trains; a series too short even then is left for
    ``nhits.check_length`` to report with its numbers.

    Args:
        timeframe: One of ``TIMEFRAMES``.
        n_bars: Length of the series to be trained, when known.
        **overrides: Any ``NHITSConfig`` field.

    Returns:
        The validated, frozen configuration.

    Raises:
        InvalidInputError: Unknown timeframe.
        pydantic.ValidationError: An override is out of range or unknown.
    """
    if timeframe not in TIMEFRAME_DEFAULTS:
        raise InvalidInputError(
            f"timeframe: expected one of {list(TIMEFRAME_DEFAULTS)}, was {timeframe!r}"
        )
    base = dict(TIMEFRAME_DEFAULTS[timeframe])
    base.update(overrides)
    base.setdefault("val_size", base["horizon"])
    cfg = NHITSConfig(**base)
    if n_bars is not None and "cv_windows" not in overrides:
        fits = (n_bars // 4 - cfg.horizon) // cfg.step_size + 1
        if fits < cfg.cv_windows:
            cfg = cfg.model_copy(update={"cv_windows": max(2, fits)})
    if n_bars is not None and "input_size" not in overrides and n_bars < min_bars(cfg):
        spare = n_bars - (min_bars(cfg) - cfg.input_size)
        shrunk = max(2 * cfg.horizon, spare)
        if shrunk < cfg.input_size:
            cfg = cfg.model_copy(update={"input_size": shrunk})
    return cfg


#: Ray Tune search space as data; ``kitrade.training.tune`` turns it into Tune objects.
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "input_size_multiplier": {"type": "choice", "values": [2, 3, 4]},
    "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
    "max_steps": {"type": "choice", "values": [100, 200, 400]},
    "n_pool_kernel_size": {"type": "choice", "values": [(2, 2, 1), (4, 2, 1), (8, 4, 1)]},
    "n_freq_downsample": {"type": "choice", "values": [(4, 2, 1), (8, 4, 1), (1, 1, 1)]},
    "mlp_units": {"type": "choice", "values": [64, 128, 256, 512]},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
    "scaler_type": {"type": "choice", "values": ["robust", "standard"]},
}
