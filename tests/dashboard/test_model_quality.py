"""A version's forecast quality through the real Serve application: the evaluation route, the
models listing, the Python client and the page's model table.

The app (``conftest.app``) has EURUSD's own trained model; three versions are registered
beside it as candidates pointing at its artifact (nothing loads a candidate): one whose
stored blocks say GARCH beats NHITS on every score, one where calibrated NHITS holds, and
one evaluated before the blocks existed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from kitrade.client import ApiError, Client
from kitrade.schemas import ModelEvaluationOut
from kitrade.training.registry import active_version, new_version_id, register_version
from tests.dashboard.conftest import KEY
from tests.dashboard.test_page import expect
from tests.services.test_quality import (
    ETS_ERROR,
    GARCH_BEATS,
    GARCH_WINNERS,
    NHITS_HOLDS,
    NHITS_WINNERS,
    calibration,
    point_metrics,
    report,
)

pytestmark = pytest.mark.slow

GARCH_SENTENCE = "On these 250 origins GARCH(1,1) bands beat NHITS on every score."


@pytest.fixture(scope="module")
def versions(app, db) -> dict[str, str]:
    """EURUSD's versions by role: active (trained), beaten, holds, old."""
    with db.connection() as conn:
        own = active_version(conn, symbol="EURUSD")
        assert own is not None
        ids = {"active": own.version}
        base = {k: v for k, v in own.metrics.items() if k not in ("probabilistic", "calibration")}
        for role, extra in (
            ("old", point_metrics()),
            ("holds", {"probabilistic": report(NHITS_HOLDS, NHITS_WINNERS).model_dump(mode="json")}),
            ("beaten", {"probabilistic": report(GARCH_BEATS, GARCH_WINNERS, ETS_ERROR).model_dump(mode="json")}),
        ):  # fmt: skip
            metrics = {**base, **extra}
            if role != "old":
                metrics["calibration"] = calibration().model_dump(mode="json")
            ids[role] = register_version(
                conn, version=new_version_id("EURUSD"), symbol="EURUSD",
                artifact_path=Path(own.artifact_path), config=own.config, metrics=metrics,
                data_start=own.data_start, data_end=own.data_end, n_bars=own.n_bars,
            ).version  # fmt: skip
    return ids


def _get(app: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{app}{path}", params=params or None, timeout=30)


def test_the_evaluation_route_gives_every_method_the_calibration_and_the_sentence(app, versions):
    r = _get(app, "/api/v1/models/EURUSD/evaluation", version=versions["beaten"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["symbol"], body["version"], body["status"]) == (
        "EURUSD", versions["beaten"], "candidate"
    )  # fmt: skip
    assert body["probabilistic"] == report(GARCH_BEATS, GARCH_WINNERS, ETS_ERROR).model_dump(
        mode="json"
    )
    assert body["calibration"] == calibration().model_dump(mode="json")
    assert body["summary"] == GARCH_SENTENCE and body["quality"]["best"] == "GARCH"
    assert body["labels"]["rw_garch"] == "GARCH(1,1)" and "auto_ets" in body["labels"]

    old = _get(app, "/api/v1/models/EURUSD/evaluation", version=versions["old"]).json()
    assert old["probabilistic"] is None and old["calibration"] is None and old["quality"] is None
    assert old["summary"].startswith("No probabilistic scores stored")
    assert old["point"]["rmae"] == 1.02 and old["point"]["verdict"] == "no better than naive"

    active = _get(app, "/api/v1/models/EURUSD/evaluation").json()  # default: the active one
    assert (active["version"], active["status"]) == (versions["active"], "active")


def test_the_evaluation_route_refuses_unknown_symbols_and_other_symbols_versions(app, versions):
    r = _get(app, "/api/v1/models/NOPE/evaluation")
    assert r.status_code == 404 and r.json()["error"] == "NotFoundError"
    r = _get(app, "/api/v1/models/GOOG/evaluation", version=versions["beaten"])
    assert r.status_code == 404 and "EURUSD's" in r.json()["message"]
    r = _get(app, "/api/v1/models/EURUSD/evaluation", version="EURUSD-20200101T000000-abcdef")
    assert r.status_code == 404 and "not found" in r.json()["message"]
    r = _get(app, "/api/v1/models/EURUSD/evaluation", version="latest")
    assert r.status_code == 422 and "version" in r.json()["message"]


def test_the_models_listing_carries_each_versions_band_quality(app, versions):
    rows = _get(app, "/api/v1/models", symbol="EURUSD").json()
    by = {r["version"]: r for r in rows}
    assert by[versions["old"]]["quality"] is None
    beaten = by[versions["beaten"]]["quality"]
    assert beaten["coverage_80"] == {
        "target": 0.8,
        "coverage": 0.762,
        "miss": True,
        "text": "76.2/80",
    }
    assert beaten["beaten_by"] == ["rw_garch"] and beaten["summary"] == GARCH_SENTENCE
    holds = by[versions["holds"]]["quality"]
    assert holds["beaten_by"] == [] and holds["coverage_80"]["miss"] is False


def test_the_client_reads_the_evaluation_as_its_models(app, versions):
    with Client(app, api_key=KEY, timeout_s=60) as kt:
        ev = kt.model_evaluation("EURUSD", version=versions["beaten"])
        old = kt.model_evaluation("EURUSD", version=versions["old"])
        active = kt.model_evaluation("EURUSD")
        with pytest.raises(ApiError) as missing:
            kt.model_evaluation("GOOG", version=versions["beaten"])
    assert isinstance(ev, ModelEvaluationOut)
    assert ev.probabilistic == report(GARCH_BEATS, GARCH_WINNERS, ETS_ERROR)
    assert ev.calibration == calibration()
    assert ev.probabilistic.winners["interval_score_80"] == "rw_garch"
    assert ev.summary == GARCH_SENTENCE
    assert old.probabilistic is None and old.calibration is None and old.quality is None
    assert active.version == versions["active"]
    assert missing.value.status == 404


def test_the_model_table_shows_calibrated_coverage_against_target_and_the_beating_baseline(
    page, app, versions, console, artifacts
):
    page.goto(f"{app}/dashboard")
    page.wait_for_selector("body[data-ready='1']")
    beaten = page.get_by_test_id(f"model-{versions['beaten']}").get_by_test_id("calibrated")
    expect(beaten.get_by_test_id("cal-80")).to_have_text("76.2/80")
    assert beaten.get_by_test_id("cal-80").get_attribute("data-miss") == "1"
    red = beaten.get_by_test_id("cal-80").evaluate("e => getComputedStyle(e).color")
    assert red == "rgb(220, 38, 38)"  # --down
    expect(beaten.get_by_test_id("cal-95")).to_have_text("95.1/95")
    assert beaten.get_by_test_id("cal-95").get_attribute("data-miss") == "0"
    expect(beaten.get_by_test_id("beaten")).to_have_text(GARCH_SENTENCE)

    holds = page.get_by_test_id(f"model-{versions['holds']}").get_by_test_id("calibrated")
    expect(holds.get_by_test_id("cal-80")).to_have_text("79.6/80")
    plain = holds.get_by_test_id("cal-80").evaluate("e => getComputedStyle(e).color")
    assert plain != red and holds.get_by_test_id("beaten").count() == 0

    old = page.get_by_test_id(f"model-{versions['old']}").get_by_test_id("calibrated")
    expect(old).to_have_text("\u2013")  # an en dash, as the page writes absence
    assert old.get_attribute("data-quality") == "none"
    page.get_by_test_id("models-table").scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "21-model-quality.png", full_page=True)
    row = page.get_by_test_id(f"model-{versions['beaten']}")
    row.screenshot(path=artifacts / "22-model-quality-beaten-row.png")
    assert console == []
