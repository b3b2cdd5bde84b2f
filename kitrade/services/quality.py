"""Forecast quality of model versions: calibrated coverage against its target, whether a
baseline beats NHITS on every score, and the plain sentence that says so.

Reads what the rolling-origin evaluation stored beside a version's point metrics
(``metrics["probabilistic"]``, ``metrics["calibration"]``, see ``kitrade.schemas.quality``).
Versions evaluated before those blocks existed read as absent, never as an error. ``kitrade
models``, ``kitrade models SYMBOL --compare``, ``GET /api/v1/models`` (and so the dashboard)
and ``GET /api/v1/models/{symbol}/evaluation`` all take their verdicts from here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from kitrade.errors import NotFoundError
from kitrade.schemas import (
    BandCoverage,
    CalibrationSummary,
    ModelEvaluationOut,
    ModelQuality,
    ModelVersionOut,
    PointSummary,
    ProbabilisticReport,
)
from kitrade.schemas.quality import NOMINAL
from kitrade.services import training
from kitrade.training import registry, scores

if TYPE_CHECKING:
    from kitrade.data.db import Database
    from kitrade.training.registry import ModelVersion

__all__ = [
    "BASELINES",
    "METHOD_LABELS",
    "SHORT_LABELS",
    "annotate",
    "baselines_beating",
    "evaluation",
    "method_label",
    "method_order",
    "model_quality",
    "read_calibration",
    "read_report",
    "summary_sentence",
    "versions",
]

_log = logging.getLogger(__name__)
_M = TypeVar("_M", bound=BaseModel)

NHITS_RAW = "nhits"
NHITS_CALIBRATED = "nhits_calibrated"
#: The baseline zoo, in the order tables list it.
BASELINES: tuple[str, ...] = ("rw_empirical", "rw_garch", "auto_ets", "seasonal_naive")
#: How a method is named in tables and sentences.
METHOD_LABELS: dict[str, str] = {
    NHITS_RAW: "NHITS raw",
    NHITS_CALIBRATED: "NHITS calibrated",
    "rw_empirical": "empirical random walk",
    "rw_garch": "GARCH(1,1)",
    "auto_ets": "AutoETS",
    "seasonal_naive": "seasonal naive",
}
#: The same, short enough for a column of the versions table.
SHORT_LABELS: dict[str, str] = {
    NHITS_RAW: "NHITS",
    NHITS_CALIBRATED: "NHITS cal",
    "rw_empirical": "RW",
    "rw_garch": "GARCH",
    "auto_ets": "ETS",
    "seasonal_naive": "s-naive",
}


def method_label(method: str) -> str:
    """A method's display name (its key when it is not a known one)."""
    return METHOD_LABELS.get(method, method)


def method_order(report: ProbabilisticReport) -> list[str]:
    """The report's methods as tables list them: NHITS raw, calibrated, the zoo, the rest."""
    known = [NHITS_RAW, NHITS_CALIBRATED, *BASELINES]
    return [m for m in known if m in report.methods] + sorted(
        m for m in report.methods if m not in known
    )


def _read(model: type[_M], metrics: dict[str, Any], key: str) -> _M | None:
    """``metrics[key]`` as ``model``; None when absent or not readable (logged, not raised:
    one unreadable version must not take a listing down)."""
    raw = (metrics or {}).get(key)
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        _log.warning("metrics[%r] is not a %s: %s", key, model.__name__, exc)
        return None


def read_report(metrics: dict[str, Any]) -> ProbabilisticReport | None:
    """The stored comparison of every method on the same origins, if the version has one."""
    return _read(ProbabilisticReport, metrics, "probabilistic")


def read_calibration(metrics: dict[str, Any]) -> CalibrationSummary | None:
    """How the version's served bands are calibrated, if the version says."""
    return _read(CalibrationSummary, metrics, "calibration")


def baselines_beating(report: ProbabilisticReport) -> list[str]:
    """Baselines better than NHITS (calibrated) on every compared score; the one that wins
    the most scores in ``report.winners`` first (``scores.baselines_beating``)."""
    return scores.baselines_beating(report.methods, report.winners)


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def summary_sentence(report: ProbabilisticReport | None, beaten_by: Sequence[str]) -> str:
    """The plain sentence: which baselines beat NHITS on every score, or how NHITS fares."""
    if report is None:
        return (
            "No probabilistic scores stored: this version was evaluated before bands and "
            "baselines were scored."
        )
    origins = f"these {report.origins} origins"
    if beaten_by:
        names = _join([method_label(m) for m in beaten_by])
        each = " each" if len(beaten_by) > 1 else ""
        return f"On {origins} {names} bands{each} beat NHITS on every score."
    nhits_wins = sum(1 for w in report.winners.values() if w in (NHITS_RAW, NHITS_CALIBRATED))
    return (
        f"No baseline beats NHITS on every score on {origins}; NHITS wins {nhits_wins} of "
        f"the {len(report.winners)} scores."
    )


def _band(report: ProbabilisticReport, score: str) -> BandCoverage:
    """Calibrated NHITS's coverage at one level beside its target, e.g. ``79.6/80``."""
    nhits = report.methods.get(NHITS_CALIBRATED)
    return BandCoverage.of(None if nhits is None else getattr(nhits, score), NOMINAL[score])


def model_quality(metrics: dict[str, Any]) -> ModelQuality | None:
    """A version's headline band quality (None: evaluated before band scores were stored)."""
    return _quality(read_report(metrics))


def _quality(report: ProbabilisticReport | None) -> ModelQuality | None:
    if report is None:
        return None
    beaten_by = baselines_beating(report)
    return ModelQuality(
        coverage_80=_band(report, "coverage_80"),
        coverage_95=_band(report, "coverage_95"),
        beaten_by=beaten_by,
        best=SHORT_LABELS.get(beaten_by[0], beaten_by[0]) if beaten_by else None,
        summary=summary_sentence(report, beaten_by),
    )


def annotate(version: ModelVersion) -> ModelVersionOut:
    """A version as the API lists it: its row and its headline band quality."""
    return ModelVersionOut(**version.model_dump(), quality=model_quality(version.metrics))


def versions(
    db: Database, *, symbols: Sequence[str] | None = None, limit: int = 100
) -> list[ModelVersionOut]:
    """Model versions, newest first per symbol, each with its headline band quality."""
    return [annotate(v) for v in training.versions(db, symbols=symbols, limit=limit)]


def _labels(report: ProbabilisticReport) -> dict[str, str]:
    """Display names of the scored methods in table order, then of the baselines not run."""
    names = [*method_order(report), *(m for m in report.baseline_errors if m not in report.methods)]
    return {m: method_label(m) for m in names}


def _point(metrics: dict[str, Any]) -> PointSummary:
    """The point forecast's verdict against naive, as stored (None where it is not)."""
    m = metrics or {}
    model = m.get("model") or {}
    verdict = m.get("verdict") or (None if m.get("beats_naive") is None else "no better than naive")
    return PointSummary(
        rmae=model.get("rmae"),
        mase=model.get("mase"),
        verdict=verdict,
        dm_pvalue=m.get("dm_pvalue"),
        n_origins=m.get("n_origins"),
    )


def _version_of(db: Database, symbol: str, version: str | None) -> ModelVersion:
    """``version`` of ``symbol`` (default: its active one); NotFoundError otherwise."""
    with db.connection() as conn:
        if version is None:
            found = registry.active_version(conn, symbol=symbol)
            if found is None:
                newest = registry.list_versions(conn, symbol=symbol, limit=1)
                raise NotFoundError(
                    f"{symbol}: no active model version"
                    + (f" (name one, e.g. {newest[0].version})" if newest else " (none trained)")
                )
            return found
        found = registry.get_version(conn, version=version)
    if found.symbol != symbol:
        raise NotFoundError(f"version {version} of {symbol} not found (it is {found.symbol}'s)")
    return found


def evaluation(db: Database, *, symbol: str, version: str | None = None) -> ModelEvaluationOut:
    """Every method's scores on a version's origins, the calibration, and the sentence.

    Args:
        db: the store.
        symbol: the symbol.
        version: one of its versions (default: the active one).

    Raises:
        NotFoundError: no such version of ``symbol`` (or no active one).
    """
    v = _version_of(db, symbol, version)
    report = read_report(v.metrics)
    quality = _quality(report)
    return ModelEvaluationOut(
        symbol=v.symbol,
        version=v.version,
        status=v.status,
        point=_point(v.metrics),
        probabilistic=report,
        calibration=read_calibration(v.metrics),
        quality=quality,
        labels={} if report is None else _labels(report),
        summary=summary_sentence(report, [] if quality is None else quality.beaten_by),
    )
