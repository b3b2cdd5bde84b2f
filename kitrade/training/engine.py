"""The forecast engine: active model versions in memory, a cache, batched inference.

No Ray here; the forecast deployment wraps it. ``refresh`` reads the active
versions from the registry and loads any new artifact (checksum verified)
before swapping it in, so a promotion is picked up without a restart and a
request never sees a half-loaded model. A corrupt artifact makes only its
symbol answer an error. Answers are cached by (symbol, version, last bar).
Every forward pass records how many series it carried (``pass_sizes`` and the
``kitrade_forecast_pass_series`` histogram): more than one only when symbols of
one shared artifact miss the cache in the same batch.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitrade import observability
from kitrade.data.calibration import calibration_summary
from kitrade.data.serving import active_artifacts, active_version_id, serving_state
from kitrade.data.symbols import symbol_exists
from kitrade.errors import ConflictError, KitradeError, NotFoundError
from kitrade.schemas import (
    CalibrationSummary,
    Forecast,
    ForecastPoint,
    ServedForecast,
    validate_symbol,
)

if TYPE_CHECKING:
    from kitrade.data.db import Database

__all__ = ["Forecast", "ForecastEngine", "ForecastPoint", "answer_is_current", "check_horizon"]

_log = logging.getLogger(__name__)


def check_horizon(symbol: str, version: str, max_horizon: int, horizon: int | None) -> None:
    """The horizon rule: ``horizon`` (None: the model's whole horizon) within 1..max_horizon.

    Raises:
        InvalidInputError: a horizon the model ``version`` of ``symbol`` cannot answer.
    """
    if horizon is not None and not 1 <= horizon <= max_horizon:
        from kitrade.errors import InvalidInputError

        raise InvalidInputError(
            f"horizon: expected 1..{max_horizon} for {symbol} (model {version}), was {horizon}"
        )


def answer_is_current(db: Database, answer: dict[str, Any]) -> bool:
    """Whether ``answer`` (a forecast as JSON) was made by the symbol's active version from its
    last committed bar. A replica that has not reloaded a just-promoted version yet answers
    with the old one: such an answer may be served, never cached. False when the database
    cannot tell."""
    try:
        with db.connection() as conn:
            version, last = serving_state(conn, symbol=str(answer.get("symbol")))
    except KitradeError:
        return False
    return (
        version is not None
        and version == answer.get("version")
        and last is not None
        and datetime.fromisoformat(str(answer.get("last_bar"))) == last
    )


def _quality(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a forecast answer says of its model's evaluation: against naive, and its bands
    against the baselines on the same origins."""
    from kitrade.schemas.quality import ProbabilisticReport
    from kitrade.training.scores import MODEL, best_baseline, dominating_baseline

    out = {
        "rmae": (metrics.get("model") or {}).get("rmae"),
        "beats_naive": metrics.get("beats_naive"),
        "verdict": metrics.get("verdict"),
        "n_origins": metrics.get("n_origins"),
    }
    if not metrics.get("probabilistic"):
        return out
    report = ProbabilisticReport(**metrics["probabilistic"])
    methods = report.methods
    mine = methods.get(MODEL)
    best = best_baseline(methods)
    if mine is None:
        return out
    ratio = None
    if best is not None and mine.interval_score_80 and methods[best].interval_score_80:
        ratio = mine.interval_score_80 / methods[best].interval_score_80  # type: ignore[operator]
    return out | {
        "coverage_80": mine.coverage_80,
        "coverage_95": mine.coverage_95,
        "interval_score_ratio": ratio,
        "best_baseline": best,
        "baseline_beats_model": dominating_baseline(methods, report.winners),
    }


@dataclass
class _Misses:
    """Requests the cache could not answer, by (symbol, version, last bar)."""

    rows: dict[tuple[str, str, datetime], list[int]] = field(default_factory=dict)
    frames: dict[tuple[str, str, datetime], Any] = field(default_factory=dict)
    loaded: dict[tuple[str, str, datetime], _Loaded] = field(default_factory=dict)
    calibration: dict[tuple[str, str, datetime], CalibrationSummary | None] = field(
        default_factory=dict
    )


@dataclass
class _Loaded:
    version: str
    model: Any
    metrics: dict[str, Any]
    path: str = ""  # the artifact; one shared artifact, one model object for all its symbols
    _initial: dict[str, CalibrationSummary | None] = field(default_factory=dict)

    def initial_calibration(self, symbol: str) -> CalibrationSummary | None:
        """The calibration the artifact carries for ``symbol`` (end of its evaluation)."""
        if symbol not in self._initial:
            from kitrade.training.conformal import ConformalState

            data = getattr(self.model, "calibration", {}).get(symbol)
            self._initial[symbol] = (
                None if data is None else ConformalState.from_json(data).summary()
            )
        return self._initial[symbol]


class ForecastEngine:
    """Serves the active versions of every symbol."""

    def __init__(self, db: Database, *, cache_size: int = 1024, device: str = "cpu") -> None:
        self._db = db
        self.device = device  # where models are loaded and run: "cpu" or "cuda"
        self._models: dict[str, _Loaded] = {}
        self._broken: dict[str, tuple[str, str]] = {}  # symbol -> (version, error)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, datetime], Forecast] = OrderedDict()
        self._cache_size = cache_size
        self._pass_sizes: deque[int] = deque(maxlen=100_000)  # series per recent forward pass

    # ----------------------------------------------------------------- models
    def refresh(self) -> dict[str, str]:
        """Load new active versions; returns symbol -> active version now served."""
        from kitrade.training.nhits import FittedModel
        from kitrade.training.registry import CorruptArtifactError, verify_artifact

        with self._db.connection() as conn:
            rows = active_artifacts(conn)
        active = {r[0]: r for r in rows}
        # A shared artifact serves several symbols: load it once, share the object.
        with self._lock:
            by_path = {m.path: m.model for m in self._models.values() if m.path}
        for symbol, version, path, metrics in rows:
            current = self._models.get(symbol)
            if current is not None and current.version == version:
                continue
            if self._broken.get(symbol, ("",))[0] == version:
                continue
            try:
                model = by_path.get(str(path))
                if model is None:
                    verify_artifact(Path(path))
                    model = FittedModel.load(Path(path), device=self.device)
                    by_path[str(path)] = model
            except (CorruptArtifactError, OSError, ValueError, RuntimeError) as exc:
                message = (
                    exc.message if isinstance(exc, KitradeError) else f"{type(exc).__name__}: {exc}"
                )
                _log.error("cannot load %s for %s: %s", version, symbol, message)
                with self._lock:
                    self._broken[symbol] = (version, message)
                    self._models.pop(symbol, None)
                continue
            with self._lock:
                self._models[symbol] = _Loaded(version, model, metrics or {}, str(path))
                self._broken.pop(symbol, None)
        with self._lock:
            for symbol in list(self._models):
                if symbol not in active:
                    self._models.pop(symbol)
            for symbol in list(self._broken):
                if symbol not in active:
                    self._broken.pop(symbol)
            return {s: m.version for s, m in self._models.items()}

    def status(self) -> dict[str, Any]:
        """What is loaded and what failed to load."""
        with self._lock:
            return {
                "models": {s: m.version for s, m in self._models.items()},
                "broken": {s: {"version": v, "error": e} for s, (v, e) in self._broken.items()},
                "cache_entries": len(self._cache),
                "device": self.device,
            }

    def pass_sizes(self, reset: bool = False) -> list[int]:
        """Series each forward pass carried (the last 100,000 passes), oldest first.

        Args:
            reset: forget them after answering (a benchmark measures one window).
        """
        with self._lock:
            sizes = list(self._pass_sizes)
            if reset:
                self._pass_sizes.clear()
        return sizes

    # --------------------------------------------------------------- forecasts
    def _model_for(self, conn: Any, symbol: str) -> _Loaded:
        with self._lock:
            loaded = self._models.get(symbol)
            broken = self._broken.get(symbol)
        if loaded is not None:
            return loaded
        if broken is not None:
            from kitrade.training.registry import CorruptArtifactError

            active = active_version_id(conn, symbol=symbol)
            if active is not None and active != broken[0]:  # rolled back since: load it now
                self.refresh()
                with self._lock:
                    loaded = self._models.get(symbol)
                if loaded is not None:
                    return loaded

            raise CorruptArtifactError(
                f"{symbol}: active version {broken[0]} cannot be served ({broken[1]}); "
                f"roll back with POST /api/v1/models/{symbol}/rollback"
            )
        if not symbol_exists(conn, symbol=symbol):
            raise NotFoundError(f"symbol {symbol} not found")
        raise ConflictError(
            f"{symbol} has no trained model yet; train it with "
            f"POST /api/v1/forecast/train-all or `kitrade train {symbol}`"
        )

    def forecast_many(
        self, requests: list[tuple[str, int | None]]
    ) -> list[Forecast | KitradeError]:
        """Answer several (symbol, horizon) requests; each gets a Forecast or its error."""
        results: list[Forecast | KitradeError | None] = [None] * len(requests)
        misses = self._lookup(requests, results)
        # One forward pass per loaded model: a shared artifact answers all its symbols at once.
        by_model: dict[int, list[tuple[str, str, datetime]]] = {}
        for key in misses.rows:
            by_model.setdefault(id(misses.loaded[key].model), []).append(key)
        for keys in by_model.values():
            self._predict(keys, misses, requests, results)
        return results  # type: ignore[return-value]

    def _lookup(
        self,
        requests: list[tuple[str, int | None]],
        results: list[Forecast | KitradeError | None],
    ) -> _Misses:
        """Answer what the cache holds (or what fails) in ``results``; the rest are misses."""
        from kitrade.data.bars import last_bar_ts, latest_bars, to_training_frame

        misses = _Misses()
        with self._db.connection() as conn:
            for i, (symbol, horizon) in enumerate(requests):
                try:
                    validate_symbol(symbol)
                    loaded = self._model_for(conn, symbol)
                    cfg = loaded.model.config
                    check_horizon(symbol, loaded.version, cfg.horizon, horizon)
                    # The newest bar's time alone decides a hit (one index lookup); the
                    # bars' frame is built only for a miss, once per key in a batch.
                    last = last_bar_ts(conn, symbol=symbol)
                    if last is None:
                        raise ConflictError(f"{symbol} has no bars")
                    key = (symbol, loaded.version, last)
                    with self._lock:
                        hit = self._cache.get(key)
                        if hit is not None:
                            self._cache.move_to_end(key)
                    if hit is not None:
                        results[i] = _cut(hit, horizon, cached=True)
                        continue
                    if key in misses.rows:
                        misses.rows[key].append(i)
                        continue
                    bars = latest_bars(conn, symbol=symbol, n=max(cfg.input_size, 2))
                    if bars.empty:
                        raise ConflictError(f"{symbol} has no bars")
                    # A bar may have landed since: key the answer by the bars it used.
                    key = (symbol, loaded.version, bars["ts"].iloc[-1].to_pydatetime())
                    misses.rows.setdefault(key, []).append(i)
                    misses.frames[key] = to_training_frame(symbol, bars)
                    misses.loaded[key] = loaded
                    misses.calibration[key] = _calibration(conn, loaded, symbol)
                except KitradeError as exc:
                    results[i] = exc
        return misses

    def _predict(
        self,
        keys: list[tuple[str, str, datetime]],
        misses: _Misses,
        requests: list[tuple[str, int | None]],
        results: list[Forecast | KitradeError | None],
    ) -> None:
        """One batched forward pass for ``keys`` (one loaded model); fills their results."""
        loaded = misses.loaded[keys[0]]
        with self._lock:
            self._pass_sizes.append(len(keys))
        observability.observe("kitrade_forecast_pass_series", len(keys))
        try:
            outs = loaded.model.predict_many([misses.frames[k] for k in keys])
        except KitradeError as exc:
            for k in keys:
                for i in misses.rows[k]:
                    results[i] = exc
            return
        now = datetime.now(UTC)
        for k, out in zip(keys, outs, strict=True):
            calibration = misses.calibration.get(k)
            raw_points = [ForecastPoint(**row) for row in out.to_dict("records")]
            full = ServedForecast(
                symbol=k[0],
                version=k[1],
                horizon=len(out),
                max_horizon=len(out),
                last_bar=k[2],
                generated_at=now,
                points=_calibrated_points(out, calibration),
                raw_points=raw_points,
                calibration=calibration,
                bands="calibrated" if calibration is not None else "raw",
                **_quality(misses.loaded[k].metrics),
            )
            with self._lock:
                self._cache[k] = full
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            for i in misses.rows[k]:
                results[i] = _cut(full, requests[i][1], cached=False)

    def forecast(self, symbol: str, horizon: int | None = None) -> Forecast:
        """One forecast; raises its error."""
        res = self.forecast_many([(symbol, horizon)])[0]
        if isinstance(res, KitradeError):
            raise res
        return res


def _cut(full: Forecast, horizon: int | None, *, cached: bool) -> Forecast:
    h = horizon or full.max_horizon
    update: dict[str, Any] = {"points": full.points[:h], "horizon": h, "cached": cached}
    raw = getattr(full, "raw_points", None)
    if raw is not None:
        update["raw_points"] = raw[:h]
    return full.model_copy(update=update)


def _calibration(conn: Any, loaded: _Loaded, symbol: str) -> CalibrationSummary | None:
    """``symbol``'s current calibration: the online one when bars have updated it, else the
    one its artifact carries (None: a model trained before calibration)."""
    online = calibration_summary(conn, version=loaded.version, symbol=symbol)
    if online is not None:
        return CalibrationSummary(**online)
    return loaded.initial_calibration(symbol)


def _calibrated_points(out: Any, calibration: CalibrationSummary | None) -> list[ForecastPoint]:
    """The forecast's points with its bands calibrated (as emitted without a calibration)."""
    if calibration is not None:
        from kitrade.training.conformal import calibrated

        factors = {k: level.factor[: len(out)] for k, level in calibration.levels.items()}
        bands = calibrated({c: out[c].to_numpy() for c in out.columns if c != "ds"}, factors)
        out = out.assign(**bands)
    return [ForecastPoint(**row) for row in out.to_dict("records")]
