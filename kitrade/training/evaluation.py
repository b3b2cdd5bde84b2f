"""Out-of-sample evaluation of NHITS models against the naive and seasonal-naive forecasts.

A model is fitted on a series minus its held-out tail, then forecasts from every origin of
that tail in batched forward passes (``rolling_forecasts``: one fit, many origins, no
refit). Each method's MAE, RMSE, rMAE (MAE over naive's MAE on the same points), textbook
MASE, direction accuracy and interval coverage are reported side by side, with a
Diebold-Mariano test against naive; ``beats naive`` is claimed only where that test says so
at 5 % (``naive_test``). ``fit_and_evaluate_shared`` does the same for one model fitted on
several series at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from kitrade.errors import InvalidInputError
from kitrade.schemas.quality import CalibrationSummary, ProbabilisticReport, ProbScores
from kitrade.stats import diebold_mariano
from kitrade.training import conformal, scores
from kitrade.training import metrics as fm

# The model's own internals (column map, frame preparation, the NeuralForecast builder) are
# shared with the module that fits and serves it; evaluation is a layer over it, same package.
from kitrade.training.nhits import (
    _COLS,
    FittedModel,
    _int_frame,
    _nf,
    _prepared,
    _rearranged,
    check_length,
)
from kitrade.training.spec import NHITSConfig

__all__ = [
    "ALPHA",
    "BEATS_NAIVE",
    "NO_BETTER",
    "EvaluationReport",
    "MethodMetrics",
    "attach_calibration",
    "baseline_zoo",
    "evaluate",
    "evaluate_shared",
    "evaluate_windows",
    "fit_and_evaluate",
    "fit_and_evaluate_shared",
    "interval_score_ratio",
    "naive_test",
    "prepare_shared",
    "probabilistic_scores",
    "rolling_forecasts",
    "score_methods",
    "shared_train_frame",
]


class MethodMetrics(BaseModel):
    """Accuracy of one method over the evaluation windows."""

    mae: float
    rmse: float
    rmae: float | None = Field(description="MAE / naive's MAE on the same points")
    mase: float | None = Field(None, description="MAE / in-sample one-step naive MAE")
    directional_accuracy: float | None
    coverage_80: float | None
    coverage_95: float | None


BEATS_NAIVE = "beats naive"
NO_BETTER = "no better than naive"
#: significance level of the Diebold-Mariano test behind ``beats_naive``
ALPHA = 0.05


class EvaluationReport(BaseModel):
    """Rolling-origin evaluation: the model and its baselines side by side."""

    model: MethodMetrics
    naive: MethodMetrics
    seasonal_naive: MethodMetrics
    beats_naive: bool = Field(description="the Diebold-Mariano test says so at 5 %")
    verdict: str = Field(description='"beats naive" or "no better than naive"')
    dm_stat: float | None = Field(description="DM statistic over the horizon; < 0: model better")
    dm_pvalue: float | None
    dm_stat_1: float | None = Field(description="DM statistic of the one-step-ahead errors")
    dm_pvalue_1: float | None
    beats_seasonal_naive: bool
    n_origins: int
    step_size: int
    horizon: int
    points: int
    eval_start: str
    eval_end: str
    probabilistic: ProbabilisticReport | None = Field(
        None,
        description="every method's band scores on the scoring origins (the later part), "
        "NHITS raw and calibrated beside the baseline zoo",
    )
    calibration: CalibrationSummary | None = Field(
        None, description="the calibration served bands start from (end of the evaluation)"
    )
    calibration_state: dict[str, Any] | None = Field(
        None, exclude=True, description="the full conformal state (saved with the artifact)"
    )

    def side_by_side(self) -> pd.DataFrame:
        """One row per method (model, naive, seasonal_naive), one column per metric."""
        return pd.DataFrame(
            {
                name: getattr(self, name).model_dump()
                for name in ("model", "naive", "seasonal_naive")
            }
        ).T


def _baseline_intervals(
    y: np.ndarray, train_end: int, horizon: int, lag_fn: Any
) -> dict[int, tuple[float, float, float, float]]:
    """Per-step empirical error quantiles (2.5, 10, 90, 97.5 %) of a baseline in-sample."""
    out = {}
    for j in range(1, horizon + 1):
        errs = []
        for c in range(max(1, train_end - 2000), train_end - j):
            ref = lag_fn(y, c, j)
            if ref is not None:
                errs.append(y[c + j] - ref)
        e = np.asarray(errs) if errs else np.zeros(1)
        out[j] = tuple(np.quantile(e, [0.025, 0.10, 0.90, 0.975]))
    return out


def _naive_ref(y: np.ndarray, c: int, j: int) -> float:
    return float(y[c])


def _season_ref_factory(season: int) -> Any:
    def ref(y: np.ndarray, c: int, j: int) -> float | None:
        back = c + j - season * int(np.ceil(j / season))
        return float(y[back]) if back >= 0 else None

    return ref


def _method_metrics(
    actual: np.ndarray,
    fc: np.ndarray,
    naive_fc: np.ndarray,
    last: np.ndarray,
    bands: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    train: np.ndarray,
) -> MethodMetrics:
    """One method's point and interval metrics over the evaluation points.

    ``bands`` is ``(lo_80, hi_80, lo_95, hi_95)``; ``train`` the series the model trained on.
    """
    return MethodMetrics(
        mae=fm.mae(actual, fc),
        rmse=fm.rmse(actual, fc),
        rmae=fm.rmae(actual, fc, naive_fc),
        mase=fm.mase(actual, fc, train),
        directional_accuracy=fm.directional_accuracy(actual, fc, last),
        coverage_80=fm.coverage(actual, bands[0], bands[1]),
        coverage_95=fm.coverage(actual, bands[2], bands[3]),
    )


def _finite(x: float) -> float | None:
    """``None`` for NaN (JSON, and so the registry's jsonb, has no NaN)."""
    return float(x) if np.isfinite(x) else None


def naive_test(
    cutoffs: np.ndarray, steps: np.ndarray, err_model: np.ndarray, err_naive: np.ndarray
) -> dict[str, Any]:
    """Diebold-Mariano tests of the model against naive and the verdict they support.

    Over the horizon, each origin's mean absolute error is one observation;
    consecutive origins overlap by ``ceil(horizon / step)`` windows, which the
    Newey-West variance allows for. At one step ahead the errors do not overlap.
    ``beats_naive`` needs the horizon test to favour the model at ``ALPHA``
    and the one-step test not to find it significantly worse.

    Returns:
        ``beats_naive, verdict, dm_stat, dm_pvalue, dm_stat_1, dm_pvalue_1``.
    """
    origins, inverse = np.unique(cutoffs, return_inverse=True)
    count = np.bincount(inverse).astype(float)
    per_model = np.bincount(inverse, np.abs(err_model)) / count
    per_naive = np.bincount(inverse, np.abs(err_naive)) / count
    step = int(np.min(np.diff(origins))) if len(origins) > 1 else 1
    lags = int(np.ceil(int(steps.max()) / step))
    whole = diebold_mariano(per_model, per_naive, h=lags)
    first = steps == steps.min()
    one = diebold_mariano(np.abs(err_model[first]), np.abs(err_naive[first]), h=1)
    stat, pvalue = _finite(whole["dm_stat"]), _finite(whole["dm_pvalue"])
    stat1, pvalue1 = _finite(one["dm_stat"]), _finite(one["dm_pvalue"])
    better = stat is not None and pvalue is not None and stat < 0 and pvalue < ALPHA
    worse_at_1 = stat1 is not None and pvalue1 is not None and stat1 > 0 and pvalue1 < ALPHA
    beats = better and not worse_at_1
    return {
        "beats_naive": beats,
        "verdict": BEATS_NAIVE if beats else NO_BETTER,
        "dm_stat": stat,
        "dm_pvalue": pvalue,
        "dm_stat_1": stat1,
        "dm_pvalue_1": pvalue1,
    }


def evaluate_windows(
    frame: pd.DataFrame, cv: pd.DataFrame, config: NHITSConfig
) -> EvaluationReport:
    """Metrics of the model's rolling-origin forecasts and of both baselines over the same points.

    Args:
        frame: The prepared frame ``cv`` was computed on (integer positions
            in ``cv`` index its rows).
        cv: ``cutoff, ds`` (integer positions) and the model's ``NHITS-*``
            columns, as neuralforecast's ``cross_validation`` writes them.
        config: The configuration evaluated.
    """
    y = frame["y"].to_numpy(dtype="float64")
    cutoffs = cv["cutoff"].to_numpy(dtype="int64")
    targets = cv["ds"].to_numpy(dtype="int64")
    steps = targets - cutoffs
    actual, last = y[targets], y[cutoffs]
    train_end = len(y) - config.test_size
    train = y[:train_end]
    season_ref = _season_ref_factory(config.season_length)
    snaive_fc = np.array(
        [
            season_ref(y, c, j) if season_ref(y, c, j) is not None else y[c]
            for c, j in zip(cutoffs, steps, strict=True)
        ]
    )

    def baseline(fc: np.ndarray, lag_fn: Any) -> MethodMetrics:
        """``fc`` with the baseline's empirical error quantiles (2.5, 10, 90, 97.5 %) per step."""
        table = _baseline_intervals(y, train_end, config.horizon, lag_fn)
        q = np.array([table[int(j)] for j in steps]).reshape(len(steps), 4)
        bands = (fc + q[:, 1], fc + q[:, 2], fc + q[:, 0], fc + q[:, 3])
        return _method_metrics(actual, fc, last, last, bands, train)

    mq = _rearranged({k: cv[v].to_numpy(dtype="float64") for k, v in _COLS.items()})
    model_bands = (mq["lo_80"], mq["hi_80"], mq["lo_95"], mq["hi_95"])
    model = _method_metrics(actual, mq["mean"], last, last, model_bands, train)
    snaive = baseline(snaive_fc, season_ref)
    ds = pd.to_datetime(frame["ds"], utc=True)
    probabilistic, state = probabilistic_scores(frame, cutoffs, targets, mq, config)
    return EvaluationReport(
        model=model,
        naive=baseline(last, _naive_ref),
        seasonal_naive=snaive,
        **naive_test(cutoffs, steps, actual - mq["mean"], actual - last),
        beats_seasonal_naive=model.mae < snaive.mae,
        n_origins=len(np.unique(cutoffs)),
        step_size=config.step_size,
        horizon=config.horizon,
        points=len(actual),
        eval_start=ds.iloc[int(targets.min())].isoformat(),
        eval_end=ds.iloc[int(targets.max())].isoformat(),
        probabilistic=probabilistic,
        calibration=None if state is None else state.summary(),
        calibration_state=None if state is None else state.to_json(),
    )


def interval_score_ratio(report: EvaluationReport, baseline: str = "rw_empirical") -> float | None:
    """Calibrated NHITS's 80 % interval score over ``baseline``'s on the same origins (below 1:
    sharper bands for their coverage); None without band scores."""
    prob = report.probabilistic
    if prob is None or "nhits_calibrated" not in prob.methods or baseline not in prob.methods:
        return None
    mine = prob.methods["nhits_calibrated"].interval_score_80
    theirs = prob.methods[baseline].interval_score_80
    return None if mine is None or not theirs else mine / theirs


#: Fewest evaluation origins that support a calibration part and a scoring part.
MIN_CALIBRATION_ORIGINS = 4


def _grid(values: np.ndarray, origins: int) -> np.ndarray:
    """Points in ``rolling_forecasts``' order (origin-major) as ``(origins, horizon)``."""
    return np.asarray(values, dtype="float64").reshape(origins, -1)


def probabilistic_scores(
    frame: pd.DataFrame,
    cutoffs: np.ndarray,
    targets: np.ndarray,
    mq: dict[str, np.ndarray],
    config: NHITSConfig,
) -> tuple[ProbabilisticReport | None, conformal.ConformalState | None]:
    """Band scores of NHITS (raw and calibrated) and the baseline zoo on the same origins.

    The first half of the origins only calibrates; every method is scored on the rest, NHITS's
    calibrated bands formed origin by origin from what was known at each
    (``conformal.sequential``). The state returned is calibrated through the last bar.

    Args:
        frame: The prepared frame (``ds`` UTC, ``y``).
        cutoffs: Each point's origin (position of the last bar seen), origin-major order.
        targets: Each point's position.
        mq: NHITS's ``mean, lo_80, hi_80, lo_95, hi_95`` at each point.
        config: The configuration evaluated (horizon, season, calibration settings).

    Returns:
        The comparison and the conformal state; both None with too few origins.
    """
    origins = np.unique(cutoffs)
    k, h = len(origins), config.horizon
    if k < MIN_CALIBRATION_ORIGINS or len(cutoffs) != k * h:
        return None, None
    y = frame["y"].to_numpy(dtype="float64")
    raw = {key: _grid(v, k) for key, v in mq.items()}
    actual = _grid(y[targets], k)
    state = conformal.ConformalState(
        horizon=h, gamma=config.conformal_gamma, window=config.conformal_window
    )
    k_cal = k // 2
    calibrated = conformal.sequential(raw, actual, origins, calibration_origins=k_cal, state=state)
    state.through = pd.Timestamp(frame["ds"].iloc[-1]).isoformat()
    later = origins[k_cal:]
    zoo, errors = baseline_zoo(
        y,
        later,
        config.horizon,
        train_end=len(y) - config.test_size,
        season_length=config.season_length,
    )
    methods = {"nhits": raw, "nhits_calibrated": calibrated} | zoo
    scored, winners = score_methods(methods, actual[k_cal:], h)
    ds = pd.to_datetime(frame["ds"], utc=True)
    report = ProbabilisticReport(
        origins=len(later),
        calibration_origins=k_cal,
        points=len(later) * h,
        eval_start=ds.iloc[int(later[0]) + 1].isoformat(),
        eval_end=ds.iloc[int(later[-1]) + h].isoformat(),
        methods=scored,
        winners=winners,
        baseline_errors=errors,
    )
    return report, state


def score_methods(
    methods: dict[str, dict[str, np.ndarray]], actual: np.ndarray, horizon: int
) -> tuple[dict[str, ProbScores], dict[str, str]]:
    """Every method's scores on the last ``len(actual)`` origins of its forecasts (rows are
    origins, columns steps), with skill against the random walk and each score's winner."""
    n = len(actual)
    steps = np.tile(np.arange(1, horizon + 1), n)
    scored = {
        name: scores.prob_scores(
            actual.reshape(-1),
            steps,
            {c: np.asarray(v)[-n:].reshape(-1) for c, v in fc.items()},
            horizon,
        )
        for name, fc in methods.items()
    }
    return scores.compare(scored)


def baseline_zoo(
    y: np.ndarray, origins: np.ndarray, horizon: int, *, train_end: int, season_length: int
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Each baseline's forecasts from ``origins`` (fitted on ``y[:train_end]`` only), and the
    reason for each one that could not run (e.g. GARCH on too few returns)."""
    from kitrade.training import baselines  # arch, statsforecast: only when evaluating

    out: dict[str, dict[str, np.ndarray]] = {}
    errors: dict[str, str] = {}
    for name in baselines.BASELINES:
        try:
            out |= baselines.baseline_forecasts(
                y,
                origins,
                horizon,
                train_end=train_end,
                season_length=season_length,
                names=(name,),
            )
        except Exception as exc:  # noqa: BLE001 - a baseline that fails is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]
    return out, errors


def rolling_forecasts(model: FittedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's forecasts from every evaluation origin, in ``cross_validation``'s layout.

    Origins (``cutoff``, the last bar seen) run ``step_size`` apart from the
    last training bar to ``horizon`` bars before the end; each forecasts
    ``horizon`` bars from the ``input_size`` bars up to it. One batched
    forward pass per 1024 origins; no refit.
    """
    config = model.config
    y = frame["y"].to_numpy(dtype="float64")
    first = len(y) - config.test_size - 1
    cutoffs = first + config.step_size * np.arange(config.cv_windows)
    size = model.nf.models[0].input_size
    tails = np.lib.stride_tricks.sliding_window_view(y, size)[cutoffs - size + 1]
    bands = model.predict_tails(tails)
    h = config.horizon
    out = pd.DataFrame(
        {
            "cutoff": np.repeat(cutoffs, h),
            "ds": (cutoffs[:, None] + np.arange(1, h + 1)).reshape(-1),
            "y": y[(cutoffs[:, None] + np.arange(1, h + 1)).reshape(-1)],
        }
    )
    for k, col in _COLS.items():
        out[col] = bands[k].reshape(-1)
    return out


def fit_and_evaluate(
    frame: pd.DataFrame,
    config: NHITSConfig,
    *,
    callbacks: list | None = None,
    accelerator: str = "cpu",
    devices: int | list[int] | str | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> tuple[FittedModel, EvaluationReport]:
    """Train once and evaluate out of sample over ``cv_windows`` rolling origins.

    One training, not two: the model trains on the series minus its last
    ``test_size`` bars and forecasts each origin's window from the bars
    before it (``rolling_forecasts``). The returned model is that one; it
    forecasts from the full history, tail included (see the module docstring).

    Args:
        frame: ``unique_id, ds, y`` of one symbol, ``ds`` in UTC.
        config: What to train and how to evaluate.
        callbacks: Lightning callbacks (progress reporting).
        accelerator: Lightning accelerator, ``"cpu"`` or ``"gpu"``.
        devices: Lightning devices; default one.
        trainer_kwargs: Further Lightning Trainer options.

    Returns:
        The trained model and its evaluation against naive and seasonal-naive.

    Raises:
        TooShortError: Fewer than ``min_bars(config)`` bars.
        InvalidInputError: A malformed frame or a reserved trainer option.
    """
    frame = _prepared(frame)
    check_length(frame, config)
    nf = _nf(
        config,
        callbacks=callbacks,
        accelerator=accelerator,
        devices=devices,
        trainer_kwargs=trainer_kwargs,
    )
    train = _int_frame(frame.iloc[: len(frame) - config.test_size], config)
    nf.fit(df=train, val_size=config.val_size)
    model = FittedModel(nf=nf, config=config, history=frame)
    report = evaluate_windows(frame, rolling_forecasts(model, frame), config)
    attach_calibration(model, {str(frame["unique_id"].iloc[0]): report})
    return model, report


def attach_calibration(model: FittedModel, reports: dict[str, EvaluationReport]) -> None:
    """Keep each series' end-of-evaluation calibration with the model (saved with it)."""
    for uid, report in reports.items():
        if report.calibration_state is not None:
            model.calibration[uid] = report.calibration_state


def evaluate(
    frame: pd.DataFrame,
    config: NHITSConfig,
    *,
    callbacks: list | None = None,
    accelerator: str = "cpu",
    devices: int | list[int] | str | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> EvaluationReport:
    """Rolling-origin evaluation of ``config`` on ``frame``: ``fit_and_evaluate``'s report.

    The origins cover the last ``test_size = horizon + step_size * (cv_windows - 1)``
    bars; each origin forecasts ``horizon`` bars. Arguments as ``fit_and_evaluate``.
    """
    return fit_and_evaluate(
        frame,
        config,
        callbacks=callbacks,
        accelerator=accelerator,
        devices=devices,
        trainer_kwargs=trainer_kwargs,
    )[1]


def fit_and_evaluate_shared(
    frames: list[pd.DataFrame],
    config: NHITSConfig,
    *,
    callbacks: list | None = None,
    accelerator: str = "cpu",
    devices: int | list[int] | str | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> tuple[FittedModel, dict[str, EvaluationReport]]:
    """Train one NHITS on several series at once, then evaluate it on each series' tail.

    A global model: every series (one ``unique_id`` each) minus its last
    ``test_size`` bars goes into one fit, early stopping on each series' last
    ``val_size`` bars. Scaling is per series: ``config.scaler_type`` normalises
    every input window by its own statistics, and a window never mixes
    series, so EURUSD near 1.1 and USDJPY near 150 train side by side.
    Each series is then evaluated exactly as ``fit_and_evaluate`` evaluates a
    symbol's own model (same ``config``: same origins, same baselines, same
    Diebold-Mariano verdict), so the two compare window for window.

    Args:
        frames: ``unique_id, ds, y`` frames, one series each, distinct ids.
        config: What to train and how to evaluate (fits the shortest series).
        callbacks: Lightning callbacks (progress reporting).
        accelerator: Lightning accelerator, ``"cpu"`` or ``"gpu"``.
        devices: Lightning devices; default one.
        trainer_kwargs: Further Lightning Trainer options.

    Returns:
        The trained model (its history: every series) and each series' report, by id.

    Raises:
        TooShortError: A series shorter than ``min_bars(config)``.
        InvalidInputError: Fewer than two series, a repeated id or a malformed frame.
    """
    prepared = prepare_shared(frames, config)
    nf = _nf(
        config,
        callbacks=callbacks,
        accelerator=accelerator,
        devices=devices,
        trainer_kwargs=trainer_kwargs,
    )
    nf.fit(df=shared_train_frame(prepared, config), val_size=config.val_size)
    model = FittedModel(nf=nf, config=config, history=pd.concat(prepared, ignore_index=True))
    reports = evaluate_shared(model, prepared, config)
    attach_calibration(model, reports)
    return model, reports


def prepare_shared(frames: list[pd.DataFrame], config: NHITSConfig) -> list[pd.DataFrame]:
    """The series of a shared model, each checked and sorted, ready to train and evaluate.

    Raises:
        TooShortError: A series shorter than ``min_bars(config)``.
        InvalidInputError: Fewer than two series, a repeated id or a malformed frame.
    """
    prepared = [_prepared(f) for f in frames]
    ids = [str(f["unique_id"].iloc[0]) for f in prepared if len(f)]
    if len(prepared) < 2 or len(set(ids)) != len(prepared):
        raise InvalidInputError(
            f"frames: expected two or more series with distinct unique_id, was {ids}"
        )
    for f in prepared:
        check_length(f, config)
    return prepared


def shared_train_frame(prepared: list[pd.DataFrame], config: NHITSConfig) -> pd.DataFrame:
    """What a shared model trains on: every series minus its ``test_size`` tail, integer ``ds``."""
    train = pd.concat([_int_frame(f.iloc[: len(f) - config.test_size], config) for f in prepared])
    return train.reset_index(drop=True)


def evaluate_shared(
    model: FittedModel, prepared: list[pd.DataFrame], config: NHITSConfig
) -> dict[str, EvaluationReport]:
    """Each series' rolling-origin evaluation of a shared model (``prepare_shared``'s frames)."""
    return {
        str(f["unique_id"].iloc[0]): evaluate_windows(f, rolling_forecasts(model, f), config)
        for f in prepared
    }
