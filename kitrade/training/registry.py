"""The model registry: versioned artifacts on disk, rows in PostgreSQL, a promotion gate.

An artifact is a directory ``<models dir>/<SYMBOL>/<version>/`` holding the
model files and a ``manifest.json`` with each file's SHA-256. It is written
into a temporary sibling directory, fsynced, then renamed into place, so a
crash mid-save never leaves a version directory that fails to load; the row
is inserted only after the rename. ``load_artifact`` verifies the manifest,
so a corrupted file is reported as such instead of producing garbage.

A shared model (one NHITS trained on every symbol of a timeframe group) has
one artifact, ``<models dir>/shared/<GROUP>/<version>/``, and one row per
symbol (``scope='shared'``, ``model_group``), each with its own evaluation,
status and gate decision; promotion and rollback stay per symbol.
``gate_scopes`` picks, per symbol, between its own model and the shared one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from kitrade.data.db import one_row
from kitrade.data.notify import notify
from kitrade.errors import ConflictError, InvalidInputError, NotFoundError
from kitrade.schemas import validate_symbol

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "VERSION_PATTERN",
    "CorruptArtifactError",
    "GateDecision",
    "ModelVersion",
    "active_version",
    "apply_gate",
    "gate_scopes",
    "get_version",
    "list_versions",
    "model_rmae",
    "new_version_id",
    "promote",
    "register_version",
    "relocate_artifacts",
    "rewrite_metrics",
    "rollback",
    "validate_version",
    "verify_artifact",
    "version_as_of",
    "write_artifact",
]

VERSION_PATTERN = r"^[A-Z0-9._-]{1,20}-\d{8}T\d{6}-[0-9a-f]{6}$"
_VERSION_RE = re.compile(VERSION_PATTERN)
MANIFEST = "manifest.json"


class CorruptArtifactError(ConflictError):
    """A version's artifact is missing or fails its checksum."""

    http_status = 503


class ModelVersion(BaseModel):
    """One registered model version."""

    version: str
    symbol: str
    status: str
    artifact_path: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    data_start: datetime
    data_end: datetime
    n_bars: int
    run_id: str | None
    reason: str | None
    created_at: datetime
    promoted_at: datetime | None
    scope: str = "symbol"
    group: str | None = None


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the promotion gate for a candidate."""

    version: str
    promoted: bool
    reason: str


def new_version_id(symbol: str, now: datetime | None = None) -> str:
    """``<SYMBOL>-<UTC yyyymmddThhmmss>-<6 hex>``: sortable, path-safe, unique."""
    validate_symbol(symbol)
    now = now or datetime.now(UTC)
    return f"{symbol}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def validate_version(version: str) -> str:
    """Return ``version`` if well-formed (no path tricks), else InvalidInputError."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise InvalidInputError(
            f"version: expected <SYMBOL>-<yyyymmddThhmmss>-<6 hex>, was {version!r}"
        )
    return version


# --------------------------------------------------------------------------- artifacts
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_artifact(
    models_dir: Path, symbol: str, version: str, save: Callable[[Path], None]
) -> Path:
    """Write an artifact atomically; ``save(dir)`` writes the model files into ``dir``.

    Returns:
        The final artifact directory.
    """
    validate_symbol(symbol)
    validate_version(version)
    parent = models_dir / symbol
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / version
    if final.exists():
        raise ConflictError(f"artifact {final} already exists")
    tmp = parent / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save(tmp)
        files = {}
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
            files[str(f.relative_to(tmp))] = _sha256(f)
        manifest = tmp / MANIFEST
        manifest.write_text(
            json.dumps({"version": version, "symbol": symbol, "files": files}, indent=1)
        )
        with manifest.open("rb") as fh:
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def verify_artifact(path: Path) -> None:
    """Raise CorruptArtifactError unless every file matches the manifest."""
    manifest = path / MANIFEST
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise CorruptArtifactError(f"artifact {path.name}: manifest unreadable ({exc})") from None
    for rel, digest in files.items():
        f = path / rel
        if not f.is_file():
            raise CorruptArtifactError(f"artifact {path.name}: file {rel} is missing")
        if _sha256(f) != digest:
            raise CorruptArtifactError(f"artifact {path.name}: file {rel} fails its checksum")


# ------------------------------------------------------------------------------ rows
_COLS = (
    "version, symbol, status, artifact_path, config, metrics, data_start, data_end, n_bars,"
    " run_id, reason, created_at, promoted_at, scope, model_group"
)
_FIELDS = [*[c.strip() for c in _COLS.split(",")][:-1], "group"]


def _row(r: tuple) -> ModelVersion:
    return ModelVersion(**dict(zip(_FIELDS, r, strict=True)))


def register_version(
    conn: psycopg.Connection,
    *,
    version: str,
    symbol: str,
    artifact_path: Path,
    config: dict[str, Any],
    metrics: dict[str, Any],
    data_start: datetime,
    data_end: datetime,
    n_bars: int,
    run_id: str | None = None,
    scope: str = "symbol",
    group: str | None = None,
) -> ModelVersion:
    """Insert a candidate version row (its artifact is already in place).

    A shared model (``scope="shared"``) gets one row per symbol, each pointing at
    the one artifact and naming the model's ``group``.
    """
    validate_version(version)
    if scope not in ("symbol", "shared") or (scope == "shared") != (group is not None):
        raise InvalidInputError(
            f"scope: expected 'symbol' without a group or 'shared' with one, was {scope!r}, "
            f"group {group!r}"
        )
    row = conn.execute(
        f"INSERT INTO model_versions (version, symbol, status, artifact_path, config, metrics,"
        f" data_start, data_end, n_bars, run_id, scope, model_group) VALUES (%s, %s, 'candidate',"
        f" %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLS}",
        (
            version,
            symbol,
            str(artifact_path),
            Jsonb(config),
            Jsonb(metrics),
            data_start,
            data_end,
            n_bars,
            run_id,
            scope,
            group,
        ),
    ).fetchone()
    return _row(one_row(row, "registering a version"))


def get_version(conn: psycopg.Connection, *, version: str) -> ModelVersion:
    """One version by id."""
    validate_version(version)
    row = conn.execute(
        f"SELECT {_COLS} FROM model_versions WHERE version = %s", (version,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"model version {version} not found")
    return _row(row)


def version_as_of(conn: psycopg.Connection, *, symbol: str, as_of: datetime) -> ModelVersion | None:
    """The newest usable version whose training data ended by ``as_of`` (or None)."""
    row = conn.execute(
        "SELECT version FROM model_versions WHERE symbol = %s AND data_end <= %s"
        " ORDER BY status IN ('active', 'retired') DESC, data_end DESC, created_at DESC LIMIT 1",
        (symbol, as_of),
    ).fetchone()
    return get_version(conn, version=row[0]) if row else None


def relocate_artifacts(conn: psycopg.Connection, *, old: str, new: str) -> None:
    """Point artifact paths under the ``old`` models dir at ``new`` (after a restore)."""
    conn.execute(
        "UPDATE model_versions SET artifact_path = %s || substr(artifact_path, %s)"
        " WHERE artifact_path LIKE %s",
        (new, len(old) + 1, old + "%"),
    )


def active_version(conn: psycopg.Connection, *, symbol: str) -> ModelVersion | None:
    """The active version of ``symbol``, if any."""
    row = conn.execute(
        f"SELECT {_COLS} FROM model_versions WHERE symbol = %s AND status = 'active'", (symbol,)
    ).fetchone()
    return _row(row) if row else None


def list_versions(
    conn: psycopg.Connection, *, symbol: str | None = None, limit: int = 100
) -> list[ModelVersion]:
    """Versions, newest first (of one symbol, or all)."""
    if symbol is None:
        rows = conn.execute(
            f"SELECT {_COLS} FROM model_versions ORDER BY symbol, created_at DESC LIMIT %s",
            (limit,),
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_COLS} FROM model_versions WHERE symbol = %s ORDER BY created_at DESC LIMIT %s",
            (symbol, limit),
        ).fetchall()
    return [_row(r) for r in rows]


def model_rmae(metrics: dict[str, Any]) -> float | None:
    """The model's relative MAE (MAE / naive's MAE) from stored evaluation metrics."""
    try:
        value = metrics["model"]["rmae"]
    except (KeyError, TypeError):
        return None
    return None if value is None else float(value)


def _verdict(metrics: dict[str, Any]) -> str:
    """How a version's evaluation reads against naive, for gate reasons."""
    if not metrics:
        return "unevaluated"
    if metrics.get("beats_naive"):
        p = metrics.get("dm_pvalue")
        return "beats naive" + ("" if p is None else f" (DM p={p:.3g})")
    return "no better than naive"


def rewrite_metrics(
    conn: psycopg.Connection, transform: Callable[[dict[str, Any]], dict[str, Any]]
) -> int:
    """Apply ``transform`` to every version's stored metrics (migrations); rows changed."""
    rows = conn.execute("SELECT version, metrics FROM model_versions").fetchall()
    changed = 0
    for version, metrics in rows:
        new = transform(dict(metrics or {}))
        if new != (metrics or {}):
            conn.execute(
                "UPDATE model_versions SET metrics = %s WHERE version = %s", (Jsonb(new), version)
            )
            changed += 1
    return changed


def _activate(conn: psycopg.Connection, symbol: str, version: str, reason: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 11))", (symbol,))
    conn.execute(
        "UPDATE model_versions SET status = 'retired' WHERE symbol = %s AND status = 'active'",
        (symbol,),
    )
    conn.execute(
        "UPDATE model_versions SET status = 'active', promoted_at = now(), reason = %s"
        " WHERE version = %s",
        (reason, version),
    )

    notify(conn, "model", symbol)  # delivered on commit (forecast caches)


#: Calibrated coverage within this distance of nominal (at 80 and 95 %) counts as on target.
BAND_TOLERANCE = 0.03


def _calibrated(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The calibrated NHITS's band scores of a version's evaluation (None before calibration)."""
    methods = (metrics.get("probabilistic") or {}).get("methods") or {}
    return methods.get("nhits_calibrated")


def _bands_on_target(metrics: dict[str, Any]) -> bool | None:
    """Whether the calibrated bands cover within ``BAND_TOLERANCE`` of 80 and 95 %."""
    cal = _calibrated(metrics)
    if cal is None or cal.get("coverage_80") is None or cal.get("coverage_95") is None:
        return None
    return (
        abs(cal["coverage_80"] - 0.8) <= BAND_TOLERANCE
        and abs(cal["coverage_95"] - 0.95) <= BAND_TOLERANCE
    )


def _interval_ratio(metrics: dict[str, Any], baseline: str = "rw_empirical") -> float | None:
    """Calibrated NHITS's 80 % interval score over ``baseline``'s on the same origins."""
    cal = _calibrated(metrics)
    other = ((metrics.get("probabilistic") or {}).get("methods") or {}).get(baseline)
    if cal is None or other is None or not other.get("interval_score_80"):
        return None
    if cal.get("interval_score_80") is None:
        return None
    return float(cal["interval_score_80"]) / float(other["interval_score_80"])


def quality_said(metrics: dict[str, Any]) -> str:
    """A version's evaluation in one phrase: its bands, then its point skill. E.g. ``bands
    79.6 %/94.8 % (target 80/95), interval score 0.91 of GARCH; point no better than naive
    (rMAE 1.020, p 0.41)``."""
    point = _verdict(metrics)
    rmae, p = model_rmae(metrics), metrics.get("dm_pvalue")
    if rmae is not None and "beats" not in point:
        point += f" (rMAE {rmae:.3f}" + ("" if p is None else f", p {p:.2g}") + ")"
    cal = _calibrated(metrics)
    if cal is None:
        return f"point {point}"
    cov = f"{100 * cal['coverage_80']:.1f} %/{100 * cal['coverage_95']:.1f} %"
    garch = _interval_ratio(metrics, "rw_garch")
    versus = "" if garch is None else f", interval score {garch:.2f} of GARCH"
    return f"bands {cov} (target 80/95){versus}; point {point}"


def _compare(cand: dict[str, Any], old: dict[str, Any], tolerance: float) -> tuple[bool, str]:
    """The gate's rule over two versions' metrics: promote?, and why.

    Point skill first: a candidate that beats naive (Diebold-Mariano, 5 %) replaces one that
    does not, and one that does not never replaces one that does. With equal verdicts, band
    quality: calibrated bands on target (within 3 points of 80 and 95 %) beat bands that are
    not; then the lower 80 % interval score relative to the random walk's on each version's
    own origins, within ``tolerance``. Versions evaluated before calibration are compared by
    relative MAE, within ``tolerance``.
    """
    new_beats, old_beats = bool(cand.get("beats_naive")), bool(old.get("beats_naive"))
    said = f"{quality_said(cand)}; vs active's {quality_said(old)}"
    if new_beats != old_beats:
        return new_beats, said
    new_ok, old_ok = _bands_on_target(cand), _bands_on_target(old)
    if new_ok is not None and old_ok is not None and new_ok != old_ok:
        return new_ok, said
    a, b = _interval_ratio(cand), _interval_ratio(old)
    if a is not None and b is not None:
        ok = a <= b * (1 + tolerance)
        how = "within" if ok else "worse than active's by more than"
        return ok, f"interval score {a:.3f} vs active's {b:.3f} of the random walk's {how} " + (
            f"tolerance {tolerance:.0%}; {said}"
        )
    new, prev = model_rmae(cand), model_rmae(old)
    if new is None:
        return False, f"no evaluation (rMAE) to compare; {said}"
    if prev is None or new <= prev * (1 + tolerance):
        shown = "(unevaluated)" if prev is None else f"{prev:.3f}"
        return True, f"rMAE {new:.3f} vs active {shown} within tolerance {tolerance:.0%}; {said}"
    return False, f"rMAE {new:.3f} worse than active ({prev:.3f}) by more than {tolerance:.0%}"


def apply_gate(
    conn: psycopg.Connection, *, version: str, tolerance: float, note: str | None = None
) -> GateDecision:
    """Promote a candidate if ``_compare`` says it is at least as good as the active version.

    The verdict against naive (a Diebold-Mariano test at 5 %) decides first;
    with equal verdicts ``tolerance`` is relative: 0.05 accepts a relative MAE
    up to 5 % above the active version's. With no active version the
    candidate is promoted. A rejected candidate keeps its row and artifact
    with the reason. ``note`` (why this candidate was chosen) leads the reason.
    """
    lead = "" if note is None else f"{note}; "
    cand = get_version(conn, version=version)
    if cand.status != "candidate":
        raise ConflictError(f"version {version} is {cand.status}, expected candidate")
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 11))", (cand.symbol,))
    current = active_version(conn, symbol=cand.symbol)
    new = model_rmae(cand.metrics)
    if current is None:
        reason = lead + "first version" + ("" if new is None else f": {quality_said(cand.metrics)}")
        _activate(conn, cand.symbol, version, reason)
        return GateDecision(version, True, reason)
    ok, why = _compare(cand.metrics, current.metrics, tolerance)
    reason = f"{lead}{why} (active {current.version})"
    if ok:
        _activate(conn, cand.symbol, version, reason)
        return GateDecision(version, True, reason)
    conn.execute(
        "UPDATE model_versions SET status = 'rejected', reason = %s WHERE version = %s",
        (reason, version),
    )
    return GateDecision(version, False, reason)


def _better_scope(own: dict[str, Any], shared: dict[str, Any]) -> tuple[bool, str]:
    """Whether the shared model's evaluation beats the symbol's own, and by how much.

    Both were evaluated on the same rolling origins. The verdict against naive
    decides first; with equal verdicts, calibrated bands on target beat bands that are not,
    then the lower interval score; without band scores the lower relative MAE wins, a tie
    going to the symbol's own model.
    """
    a, b = model_rmae(own), model_rmae(shared)
    own_beats, shared_beats = bool(own.get("beats_naive")), bool(shared.get("beats_naive"))
    if own_beats != shared_beats:
        winner = "shared" if shared_beats else "own"
        return shared_beats, f"{winner} model chosen: it beats naive and the other does not"
    own_ok, shared_ok = _bands_on_target(own), _bands_on_target(shared)
    if own_ok is not None and shared_ok is not None and own_ok != shared_ok:
        winner = "shared" if shared_ok else "own"
        return bool(shared_ok), (
            f"{winner} model chosen: its calibrated bands cover on target and the other's do "
            f"not (own: {quality_said(own)}; shared: {quality_said(shared)})"
        )
    ia, ib = _interval_ratio(own), _interval_ratio(shared)
    if ia is not None and ib is not None and ia != ib:
        return ib < ia, (
            f"{'shared' if ib < ia else 'own'} model chosen: interval score {min(ia, ib):.3f} "
            f"vs {max(ia, ib):.3f} of the random walk's on the same origins"
        )
    if b is None or (a is not None and a <= b):
        shown = "" if a is None or b is None else f" (rMAE {a:.3f} vs shared {b:.3f})"
        return False, f"own model chosen over shared{shown}"
    if a is None:
        return True, f"shared model chosen (rMAE {b:.3f}; own unevaluated)"
    return True, f"shared model chosen: rMAE {b:.3f} vs own {a:.3f} ({(b - a) / a:+.1%})"


def gate_scopes(
    conn: psycopg.Connection, *, own: str, shared: str, tolerance: float
) -> GateDecision:
    """Gate a symbol's two candidates (its own model and the shared one): the better goes on.

    The better of the two (``_better_scope``, on the same evaluation windows)
    goes through ``apply_gate`` with the choice leading its reason; the other
    is rejected with that reason.

    Raises:
        InvalidInputError: The two versions are not one symbol's own and shared candidates.
    """
    a, b = get_version(conn, version=own), get_version(conn, version=shared)
    if a.symbol != b.symbol or a.scope != "symbol" or b.scope != "shared":
        raise InvalidInputError(
            f"versions {own}, {shared}: expected one symbol's own and shared candidates"
        )
    use_shared, why = _better_scope(a.metrics, b.metrics)
    winner, loser = (shared, own) if use_shared else (own, shared)
    conn.execute(
        "UPDATE model_versions SET status = 'rejected', reason = %s"
        " WHERE version = %s AND status = 'candidate'",
        (f"not chosen: {why}", loser),
    )
    return apply_gate(conn, version=winner, tolerance=tolerance, note=why)


def promote(
    conn: psycopg.Connection, *, symbol: str, version: str, models_root: Path | None = None
) -> ModelVersion:
    """Make ``version`` the active one of ``symbol`` (manual override of the gate)."""
    validate_symbol(symbol)
    v = get_version(conn, version=version)
    if v.symbol != symbol:
        raise InvalidInputError(f"version {version} belongs to {v.symbol}, not {symbol}")
    verify_artifact(Path(v.artifact_path))
    if v.status != "active":
        _activate(conn, symbol, version, "promoted manually")
    return get_version(conn, version=version)


def rollback(
    conn: psycopg.Connection, *, symbol: str, to_version: str | None = None
) -> ModelVersion:
    """Activate ``to_version``, or the version that was active before the current one."""
    validate_symbol(symbol)
    if to_version is not None:
        return promote(conn, symbol=symbol, version=to_version)
    current = active_version(conn, symbol=symbol)
    row = conn.execute(
        f"SELECT {_COLS} FROM model_versions WHERE symbol = %s AND status = 'retired'"
        " AND promoted_at IS NOT NULL ORDER BY promoted_at DESC LIMIT 1",
        (symbol,),
    ).fetchone()
    if row is None:
        raise ConflictError(
            f"{symbol}: no earlier promoted version to roll back to"
            + (f" (active: {current.version})" if current else "")
        )
    return promote(conn, symbol=symbol, version=_row(row).version)
