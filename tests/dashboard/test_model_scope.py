"""A version's scope and group, as the models API, the Python client and the page show them.

The app (``conftest.app``) has EURUSD's own model; a shared version of group
``FX`` is registered beside it as a candidate, as ``train_group`` registers
one per symbol (its row points at an artifact on disk; nothing loads a
candidate).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kitrade.client import Client
from kitrade.schemas import ModelVersionOut
from kitrade.training.registry import active_version, new_version_id, register_version
from tests.dashboard.conftest import KEY
from tests.dashboard.test_page import expect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def versions(app, db) -> tuple[str, str]:
    """(own version, shared version) of EURUSD."""
    with db.connection() as conn:
        own = active_version(conn, symbol="EURUSD")
        assert own is not None
        shared = register_version(
            conn, version=new_version_id("EURUSD"), symbol="EURUSD",
            artifact_path=Path(own.artifact_path), config=own.config, metrics=own.metrics,
            data_start=own.data_start, data_end=own.data_end, n_bars=own.n_bars,
            scope="shared", group="FX",
        )  # fmt: skip
    return own.version, shared.version


def test_the_models_api_and_the_client_give_scope_and_group(app, versions):
    own, shared = versions
    rows = httpx.get(f"{app}/api/v1/models", params={"symbol": "EURUSD"}, timeout=30).json()
    by = {r["version"]: r for r in rows}
    assert (by[shared]["scope"], by[shared]["group"]) == ("shared", "FX")
    assert (by[own]["scope"], by[own]["group"]) == ("symbol", None)
    with Client(app, api_key=KEY, timeout_s=60) as kt:
        listed = {v.version: v for v in kt.models("EURUSD")}
    assert isinstance(listed[shared], ModelVersionOut)
    assert (listed[shared].scope, listed[shared].group) == ("shared", "FX")
    assert (listed[own].scope, listed[own].group) == ("symbol", None)


def test_the_models_table_shows_scope_and_group(page, app, versions, console, artifacts):
    own, shared = versions
    page.goto(f"{app}/dashboard")
    page.wait_for_selector("body[data-ready='1']")
    cell = page.get_by_test_id(f"model-{shared}").get_by_test_id("scope")
    expect(cell).to_have_text("shared · FX")
    assert (cell.get_attribute("data-scope"), cell.get_attribute("data-group")) == ("shared", "FX")
    mine = page.get_by_test_id(f"model-{own}").get_by_test_id("scope")
    expect(mine).to_have_text("symbol")
    assert mine.get_attribute("data-group") == ""
    page.screenshot(path=artifacts / "20-model-scope.png", full_page=True)
    assert console == []
