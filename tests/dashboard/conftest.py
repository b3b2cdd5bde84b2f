"""The dashboard in a real headless Chromium against the real Serve application.

Chromium is Debian's (``make browser-deps``), driven by Playwright for Python
(``playwright install`` downloads browsers from a CDN; Debian's package needs
only apt). Without it the browser tests fail and say how to get it, unless
``KITRADE_SKIP_BROWSER=1``. Screenshots go to ``artifacts/dashboard/`` (git
ignores it; ``KITRADE_ARTIFACTS_DIR`` moves it) and the path is printed at the
end of the module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import app_env, deploy_kitrade, free_port

KEY = "dashboard-test-key-0123456789"
TINY = {"max_steps": 30, "mlp_units": 32, "val_check_steps": 10, "windows_batch_size": 64}
#: Steps of a training started from the page (the server's default config otherwise):
#: enough for the progress to be seen moving, few enough to finish in seconds.
PAGE_TRAIN_STEPS = 60
CHROMIUM = os.environ.get("KITRADE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where screenshots go; printed when the module ends."""
    root = Path(os.environ.get("KITRADE_ARTIFACTS_DIR", Path(__file__).parents[2] / "artifacts"))
    out = root / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    yield out
    shots = sorted(p.name for p in out.glob("*.png"))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and shots:
        reporter.write_line(f"\ndashboard screenshots in {out}: {', '.join(shots)}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright (fails with the fix when missing)."""
    if os.environ.get("KITRADE_SKIP_BROWSER") == "1":
        pytest.skip("KITRADE_SKIP_BROWSER=1")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"browser tests need Debian's chromium at {CHROMIUM}: run `make browser-deps` "
            "(apt-get install chromium; `playwright install` cannot download here), point "
            "KITRADE_CHROMIUM at another build, or set KITRADE_SKIP_BROWSER=1 to skip them",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "browser tests need Playwright for Python: `make install` (the `test` extra)",
            pytrace=False,
        )
    with sync_playwright() as pw:
        # Playwright passes --no-sandbox (chromium_sandbox=False), which running as root needs.
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def app(module_settings: Any, db: Any) -> Iterator[str]:
    """The Serve application on 127.0.0.1 with EURUSD and GOOG bars and a tiny EURUSD model."""
    import ray
    from ray import serve

    from kitrade.cluster import connect
    from kitrade.data.sources.sample import SampleSource
    from kitrade.data.sync import sync_symbols
    from kitrade.training.tasks import new_run_id, train_symbol

    with db.connection() as conn:
        conn.execute("TRUNCATE bars, symbols, model_versions, training_runs CASCADE")
    sync_symbols(db, SampleSource())
    train_symbol(module_settings, "EURUSD", run_id=new_run_id(), overrides=TINY)
    env = app_env(
        module_settings,
        KEY,
        KITRADE_TRAIN_MAX_STEPS=str(PAGE_TRAIN_STEPS),
        NHITS_USE_GPU="0",
    )
    port = free_port()
    connect(num_cpus=4)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = deploy_kitrade(env, port, timeout_s=90)
    yield base
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def console() -> list[str]:
    """Console errors and uncaught page errors seen by the page so far."""
    return []


@pytest.fixture(scope="module")
def page(browser: Any, app: str, console: list[str]) -> Iterator[Any]:
    """One page for the module, opened on the dashboard."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    pg.set_default_timeout(30_000)
    yield pg
    context.close()
