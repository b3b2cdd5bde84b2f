"""NHITS fit, forecast and rolling-origin evaluation over the canonical frame.

Pure functions over ``unique_id, ds, y`` frames (one symbol each); no Ray.

Training once: ``fit_and_evaluate`` trains once on the series minus the
evaluation tail (``test_size`` bars; early stopping on the last
``val_size`` bars of the rest) and then forecasts from every rolling origin
of the tail out of sample, without refitting: ``cv_windows`` origins
``step_size`` bars apart (by default hundreds, one bar apart), predicted in
batches of one forward pass each. That trained model is the one saved and
served: its forecasts start from the latest bars it is given, so the
held-out tail informs the forecast without having been seen in training,
and the stored metrics are honest out-of-sample numbers.
``fit`` trains on the whole series instead (what a Tune trial needs);
``evaluate`` is ``fit_and_evaluate`` keeping only the report.

Timestamps: bars are irregular (weekends, holidays), so the model sees an
integer time index 0..n-1 (neuralforecast with ``freq=1``); the real UTC
timestamps are kept beside it and future ones extrapolated from the series'
own spacing and trading slots (``future_timestamps``).

Intervals: ``MQLoss`` with levels 80 and 95 gives the median and the
10/90 and 2.5/97.5 % quantiles directly (columns ``NHITS-median``,
``NHITS-lo-95``, ``NHITS-lo-80``, ``NHITS-hi-80``, ``NHITS-hi-95``). The
naive and seasonal-naive baselines get intervals from the empirical
quantiles of their own in-sample h-step errors, so all three are compared
on the same footing.

Scores: ``rmae`` is the MAE relative to the naive last-value forecast over
the same points (naive scores exactly 1); ``mase`` is Hyndman & Koehler's,
scaled by the training series' in-sample one-step naive MAE. Whether the
model beats naive is a Diebold-Mariano test (``kitrade.stats``, HLN
correction) on absolute errors: over the whole horizon, each origin's mean
absolute error being one observation (Newey-West lags for the overlap of
consecutive origins), and at one step ahead. ``beats_naive`` holds only when
the horizon test rejects equal accuracy at 5 % in the model's favour and the
one-step test does not find it significantly worse; otherwise the verdict is
"no better than naive". On FX bars it usually is.

Shared models: ``fit_and_evaluate_shared`` trains one network on several
series (one ``unique_id`` each; per-series scaling by the per-window
temporal scaler) and evaluates each series exactly as its own model would be.

Threads: these functions leave ``torch.set_num_threads`` to the caller (the
Ray task sets it from its CPU share).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kitrade.errors import InvalidInputError, TooShortError
from kitrade.training.spec import NHITSConfig, min_bars

__all__ = [
    "FittedModel",
    "check_length",
    "fit",
    "from_model_space",
    "future_timestamps",
    "to_model_space",
]

_log = logging.getLogger(__name__)
_ALIAS = "NHITS"
_COLS = {
    "mean": f"{_ALIAS}-median",
    "lo_80": f"{_ALIAS}-lo-80",
    "hi_80": f"{_ALIAS}-hi-80",
    "lo_95": f"{_ALIAS}-lo-95",
    "hi_95": f"{_ALIAS}-hi-95",
}
_META_FORMAT = 1
#: Trainer options the config or the named arguments own; ``trainer_kwargs`` may not set them.
_RESERVED_TRAINER_KWARGS = frozenset(
    {"max_steps", "max_epochs", "callbacks", "accelerator", "devices"}
)


def check_length(frame: pd.DataFrame, config: NHITSConfig, *, evaluate: bool = True) -> None:
    """Raise TooShortError with the numbers when the series cannot support ``config``.

    Args:
        frame: The canonical frame of one symbol.
        config: The configuration to train with.
        evaluate: Whether the rolling-origin evaluation is part of the run
            (``spec.min_bars``).

    Raises:
        TooShortError: e.g. ``"BTCUSD: 40 bars, expected at least 48 for
            input_size=24, horizon=6, val_size=6, cv_windows=2, step_size=6"``.
    """
    need = min_bars(config, evaluate=evaluate)
    if len(frame) < need:
        uid = frame["unique_id"].iloc[0] if len(frame) else "series"
        parts = [
            f"input_size={config.input_size}",
            f"horizon={config.horizon}",
            f"val_size={config.val_size}",
        ]
        if evaluate:
            parts += [f"cv_windows={config.cv_windows}", f"step_size={config.step_size}"]
        raise TooShortError(
            f"{uid}: {len(frame)} bars, expected at least {need} for {', '.join(parts)}"
        )


def _prepared(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame sorted by ``ds`` with a fresh index, after checking it holds one clean series."""
    missing = {"unique_id", "ds", "y"} - set(frame.columns)
    if missing:
        raise InvalidInputError(
            f"frame: expected columns unique_id, ds, y, was missing {sorted(missing)}"
        )
    ids = frame["unique_id"].unique()
    if len(ids) > 1:
        raise InvalidInputError(f"frame: expected one unique_id, was {len(ids)}: {list(ids)[:5]}")
    bad = int((~np.isfinite(frame["y"].to_numpy(dtype="float64"))).sum())
    if bad:
        raise InvalidInputError(f"frame: expected finite y, was {bad} NaN/inf values")
    out = frame.sort_values("ds", kind="stable").reset_index(drop=True)
    if out["ds"].duplicated().any():
        raise InvalidInputError("frame: expected unique ds, was duplicated timestamps")
    return out


def future_timestamps(ds: pd.Series | pd.DatetimeIndex, n: int) -> pd.DatetimeIndex:
    """``n`` timestamps after the last of ``ds``, spaced like the series.

    The step is the most common spacing of ``ds``. Monthly (and longer) bars
    step by calendar months, landing on month ends when the history does.
    Shorter bars skip the trading slots the history never uses (the weekday
    for daily and weekly bars; weekday and time of day for intraday bars, so
    EURUSD hours skip the FX weekend) once the history spans four weeks; a
    shorter history skips weekends only, and only when it has no weekend bars.

    Raises:
        InvalidInputError: Fewer than two timestamps.
    """
    ds = pd.Series(pd.to_datetime(ds, utc=True)).reset_index(drop=True)
    if len(ds) < 2:
        raise InvalidInputError(f"ds: expected at least 2 timestamps to extrapolate, was {len(ds)}")
    last = ds.iloc[-1]
    step = pd.Series(ds.diff().dropna()).mode().iloc[0]
    if step >= pd.Timedelta(days=27):
        if (ds.dt.is_month_end).all():
            return pd.date_range(last, periods=n + 1, freq="ME")[1:]
        return pd.DatetimeIndex([last + pd.DateOffset(months=k) for k in range(1, n + 1)])
    recent = ds.iloc[-10_000:]
    intraday = step < pd.Timedelta(days=1)

    def slot(t: pd.Timestamp) -> tuple[int, ...]:
        return (t.weekday(), t.hour, t.minute) if intraday else (t.weekday(),)

    if recent.iloc[-1] - recent.iloc[0] >= pd.Timedelta(days=28):
        seen = {slot(t) for t in recent}

        def allowed(t: pd.Timestamp) -> bool:
            return slot(t) in seen
    else:
        weekend_free = not ds.dt.day_of_week.isin([5, 6]).any()

        def allowed(t: pd.Timestamp) -> bool:
            return not (weekend_free and t.weekday() >= 5)

    # A week of steps without an allowed slot means the slots do not line up
    # with this step (an irregular series); plain stepping is then the answer.
    patience = int(pd.Timedelta(days=7) / step) + 1
    out: list[pd.Timestamp] = []
    t, misses = last, 0
    while len(out) < n:
        t = t + step
        if misses <= patience and not allowed(t):
            misses += 1
            continue
        misses = 0
        out.append(t)
    return pd.DatetimeIndex(out)


def _quiet() -> None:
    """Keep Lightning's banners ("GPU available", "Seed set") and chatter off the console.

    Runs after Lightning is imported: importing it resets its loggers to INFO.
    """

    # Lightning's deprecation chatter about its own internals says nothing to our users.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", module="pytorch_lightning.*")
    for name in ("pytorch_lightning", "lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _nf(
    config: NHITSConfig,
    *,
    callbacks: list | None,
    accelerator: str,
    devices: int | list[int] | str | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Heavy (neuralforecast, torch): only fitting and predicting need it.
        from neuralforecast import NeuralForecast
        from neuralforecast.losses.pytorch import MQLoss
        from neuralforecast.models import NHITS
    _quiet()

    extra = dict(trainer_kwargs or {})
    clash = sorted(_RESERVED_TRAINER_KWARGS & set(extra))
    if clash:
        raise InvalidInputError(
            f"trainer_kwargs: expected Lightning Trainer options, was {clash} "
            "(set max_steps on NHITSConfig; callbacks, accelerator, devices as arguments)"
        )
    trainer = {
        "accelerator": accelerator,
        # One device: a Ray task sees only the (fractional) GPU it was given.
        "devices": 1 if devices is None else devices,
        "callbacks": list(callbacks or []),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        **extra,
    }
    model = NHITS(
        h=config.horizon,
        input_size=config.input_size,
        loss=MQLoss(level=list(config.levels)),
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        windows_batch_size=config.windows_batch_size,
        n_pool_kernel_size=list(config.n_pool_kernel_size),
        n_freq_downsample=list(config.n_freq_downsample),
        mlp_units=3 * [[config.mlp_units, config.mlp_units]],
        dropout_prob_theta=config.dropout,
        scaler_type=config.scaler_type,
        early_stop_patience_steps=config.early_stop_patience_steps,
        val_check_steps=config.val_check_steps,
        random_seed=config.random_seed,
        alias=_ALIAS,
        # neuralforecast's data loaders default to num_workers=0 (no worker
        # processes); setting it here would only draw a warning at load time.
        **trainer,
    )
    return NeuralForecast(models=[model], freq=1)


_ORDER = ("lo_95", "lo_80", "mean", "hi_80", "hi_95")


def _rearranged(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sort each row's quantiles so bands never cross (quantile rearrangement).

    A briefly trained MQLoss network can emit crossing quantiles; sorting them
    per point is the standard repair and never widens the set of values.
    """
    stacked = np.sort(np.column_stack([values[k] for k in _ORDER]), axis=1)
    return {k: stacked[:, i] for i, k in enumerate(_ORDER)}


def to_model_space(y: np.ndarray, config: NHITSConfig) -> np.ndarray:
    """Prices as the network sees them: as they are, or their logs for ``target="log_return"``.

    A log price window, scaled by the network's per-window scaler (which removes its level),
    is the window's cumulative log returns: the network forecasts cumulative log returns.

    Raises:
        InvalidInputError: ``log_return`` on a series with a price at or below zero.
    """
    y = np.asarray(y, dtype="float64")
    if config.target == "level":
        return y
    if (y <= 0).any():
        raise InvalidInputError(
            f"target log_return: expected prices > 0, was {int((y <= 0).sum())} at or below 0"
        )
    return np.log(y)


def from_model_space(values: np.ndarray, config: NHITSConfig) -> np.ndarray:
    """The network's outputs back as price levels (quantiles map through ``exp`` exactly)."""
    return values if config.target == "level" else np.exp(values)


def _int_frame(frame: pd.DataFrame, config: NHITSConfig) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": frame["unique_id"].to_numpy(),
            "ds": np.arange(len(frame), dtype="int64"),
            "y": to_model_space(frame["y"].to_numpy(dtype="float64"), config),
        }
    )


@dataclass
class FittedModel:
    """A trained NHITS with what it needs to forecast real timestamps."""

    nf: Any
    config: NHITSConfig
    history: pd.DataFrame  # unique_id, ds (UTC), y — the series it was trained/evaluated on
    #: unique_id -> its band calibration at the end of the evaluation
    #: (``conformal.ConformalState.to_json``); empty when not evaluated.
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)

    def predict(
        self, frame: pd.DataFrame | None = None, horizon: int | None = None
    ) -> pd.DataFrame:
        """Forecast ``horizon`` steps after the last bar of ``frame`` (default: its history).

        Returns:
            ``ds, mean, lo_80, hi_80, lo_95, hi_95`` with real UTC timestamps.
        """
        horizon = horizon or self.config.horizon
        if not 1 <= horizon <= self.config.horizon:
            raise InvalidInputError(
                f"horizon: expected 1..{self.config.horizon} for this model, was {horizon}"
            )
        if frame is None and self.history["unique_id"].nunique() > 1:
            raise InvalidInputError("frame: a shared model needs the series to forecast from")
        frame = self.history if frame is None else frame
        if len(frame) < self.config.input_size:
            raise TooShortError(
                f"forecast needs the last {self.config.input_size} bars, got {len(frame)}"
            )
        return self.predict_many([frame], horizon)[0]

    def series(self, unique_id: str) -> pd.DataFrame:
        """The stored history of one series (a shared model holds several).

        Raises:
            NotFoundError: The model was not trained on ``unique_id``.
        """
        out = self.history[self.history["unique_id"] == unique_id].reset_index(drop=True)
        if out.empty:
            from kitrade.errors import NotFoundError

            ids = sorted(str(u) for u in self.history["unique_id"].unique())
            raise NotFoundError(f"{unique_id}: not a series of this model (it has {ids})")
        return out

    def predict_many(
        self, frames: list[pd.DataFrame], horizon: int | None = None
    ) -> list[pd.DataFrame]:
        """Forecast from several histories in one forward pass, without a Lightning Trainer.

        Each frame needs at least ``input_size`` bars; the network sees the last
        ``input_size`` values, normalised by the model's own temporal scaler,
        exactly as neuralforecast's predict does (``predict_reference``).
        """
        horizon = horizon or self.config.horizon
        if not 1 <= horizon <= self.config.horizon:
            raise InvalidInputError(
                f"horizon: expected 1..{self.config.horizon} for this model, was {horizon}"
            )
        size = self.nf.models[0].input_size
        for f in frames:
            if len(f) < size:
                raise TooShortError(f"forecast needs the last {size} bars, got {len(f)}")
        tails = np.array([f["y"].to_numpy(dtype="float64")[-size:] for f in frames])
        bands = self.predict_tails(tails)
        out = []
        for i, f in enumerate(frames):
            df = pd.DataFrame({k: bands[k][i, :horizon] for k in _COLS})
            df.insert(0, "ds", future_timestamps(f["ds"], horizon))
            out.append(df)
        return out

    def predict_tails(self, tails: np.ndarray, batch: int = 1024) -> dict[str, np.ndarray]:
        """Forecasts from many input windows, ``batch`` per forward pass.

        Args:
            tails: ``(k, input_size)`` of the last values before each origin.
            batch: Windows per forward pass.

        Returns:
            ``mean, lo_80, hi_80, lo_95, hi_95``, each ``(k, horizon)``, bands sorted.
        """
        import torch  # heavy (torch): only where a model runs

        model = self.nf.models[0]
        size, h = model.input_size, model.h
        names = [str(n) for n in model.loss.output_names]
        index = {k: names.index(v[len(_ALIAS) :]) for k, v in _COLS.items()}
        device = next(model.parameters()).device  # where ``load`` put the weights
        parts = []
        model.eval()
        for start in range(0, len(tails), batch):
            chunk = to_model_space(tails[start : start + batch], self.config).astype("float32")
            temporal = torch.zeros(len(chunk), size + h, 2, 1, device=device)
            temporal[:, :size, 0, 0] = torch.from_numpy(chunk).to(device)
            temporal[:, :size, 1, 0] = 1.0
            windows = {"temporal": temporal, "temporal_cols": pd.Index(["y", "available_mask"])}
            with torch.no_grad():
                windows = model._normalization(windows=windows, y_idx=0)
                y_hat = model._predict_step_direct_batch(
                    windows["temporal"][:, :size, 0],
                    windows["temporal"][:, :size, 1],
                    None,
                    None,
                    None,
                    y_idx=0,
                )
            parts.append(y_hat.reshape(len(chunk), h, -1).cpu().numpy().astype("float64"))
        arr = np.concatenate(parts) if parts else np.zeros((0, h, len(names)))
        arr = from_model_space(arr, self.config)
        flat = _rearranged({k: arr[:, :, j].reshape(-1) for k, j in index.items()})
        return {k: v.reshape(len(arr), h) for k, v in flat.items()}

    def predict_reference(self, frame: pd.DataFrame, horizon: int | None = None) -> pd.DataFrame:
        """neuralforecast's own predict (builds a Trainer): the reference ``predict_many`` matches."""
        horizon = horizon or self.config.horizon
        tail = frame.iloc[-(self.config.input_size + 1) :]
        fc = self.nf.predict(df=_int_frame(tail, self.config))
        vals = _rearranged(
            {
                k: from_model_space(fc[v].to_numpy(dtype="float64")[:horizon], self.config)
                for k, v in _COLS.items()
            }
        )
        out = pd.DataFrame({k: vals[k] for k in _COLS})
        out.insert(0, "ds", future_timestamps(frame["ds"], horizon))
        return out

    def save(self, path: Path) -> None:
        """Write the model into directory ``path`` (the registry makes it atomic).

        Layout: ``nf/`` (neuralforecast's safetensors weights and JSON
        configuration, no pickle), ``config.json`` (the ``NHITSConfig``),
        ``history.parquet`` (the recent bars: the default forecast origin and
        the spacing future timestamps follow), ``calibration.json`` (each series'
        band calibration at the end of its evaluation, when evaluated) and
        ``meta.json`` (the time-index mapping: last real timestamp, bar spacing,
        column names).
        """
        path = Path(path)
        self.nf.save(path=str(path / "nf"), save_dataset=False, overwrite=True)
        keep = max(self.config.input_size * 4, 500)
        ids = [str(u) for u in self.history["unique_id"].unique()]
        if len(ids) > 1:  # a shared model: the recent bars of every series
            self.history.groupby("unique_id", sort=False).tail(keep).to_parquet(
                path / "history.parquet"
            )
        else:
            self.history.iloc[-keep:].to_parquet(path / "history.parquet")
        (path / "config.json").write_text(json.dumps(self.config.model_dump(mode="json")))
        if self.calibration:
            (path / "calibration.json").write_text(json.dumps(self.calibration))
        ds = pd.to_datetime(self.history["ds"], utc=True)
        step = ds.diff().dropna().mode()
        meta = {
            "format": _META_FORMAT,
            "unique_id": str(self.history["unique_id"].iloc[-1]),
            "n_bars": len(self.history),
            "first_ds": ds.iloc[0].isoformat(),
            "last_ds": ds.iloc[-1].isoformat(),
            "step_seconds": step.iloc[0].total_seconds() if len(step) else None,
            "time_index": "integer 0..n-1 (neuralforecast freq=1)",
            "columns": _COLS,
        }
        if len(ids) > 1:
            meta["unique_ids"] = ids
        (path / "meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: Path, *, device: str = "cpu") -> FittedModel:
        """Read a model written by ``save``.

        Args:
            path: The directory ``save`` wrote.
            device: ``"cpu"`` or ``"cuda"``: where the weights live and ``predict_many``
                and neuralforecast's own predict run; a model trained on a GPU loads onto
                a CPU-only replica by default.
        """

        path = Path(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Heavy (neuralforecast, torch): only fitting and predicting need it.
            from neuralforecast import NeuralForecast

            nf = NeuralForecast.load(path=str(path / "nf"))
        _quiet()
        for model in nf.models:
            model.to(device)
            model.trainer_kwargs["accelerator"] = "gpu" if device.startswith("cuda") else "cpu"
            model.trainer_kwargs["devices"] = 1
        config = NHITSConfig(**json.loads((path / "config.json").read_text()))
        history = pd.read_parquet(path / "history.parquet")
        history["ds"] = pd.to_datetime(history["ds"], utc=True)
        cal_path = path / "calibration.json"
        calibration = json.loads(cal_path.read_text()) if cal_path.exists() else {}
        return cls(nf=nf, config=config, history=history, calibration=calibration)


def fit(
    frame: pd.DataFrame,
    config: NHITSConfig,
    *,
    callbacks: list | None = None,
    accelerator: str = "cpu",
    devices: int | list[int] | str | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> FittedModel:
    """Train on the whole series (early stopping on its last ``val_size`` bars).

    Args:
        frame: ``unique_id, ds, y`` of one symbol, ``ds`` in UTC.
        config: What to train.
        callbacks: Lightning callbacks (progress reporting, Tune reporting).
        accelerator: Lightning accelerator, ``"cpu"`` or ``"gpu"``.
        devices: Lightning devices; default one.
        trainer_kwargs: Further Lightning Trainer options (``precision``,
            ``gradient_clip_val``...); not the ones the arguments above own.

    Returns:
        The trained model, its history being ``frame``.

    Raises:
        TooShortError: Fewer than ``min_bars(config, evaluate=False)`` bars.
        InvalidInputError: A malformed frame or a reserved trainer option.
    """
    frame = _prepared(frame)
    check_length(frame, config, evaluate=False)
    nf = _nf(
        config,
        callbacks=callbacks,
        accelerator=accelerator,
        devices=devices,
        trainer_kwargs=trainer_kwargs,
    )
    nf.fit(df=_int_frame(frame, config), val_size=config.val_size)
    return FittedModel(nf=nf, config=config, history=frame)
