"""The dashboard's routes on a bare FastAPI app: the page, the asset allow-list, caching."""

from __future__ import annotations

import gzip
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kitrade.dashboard import mount
from kitrade.dashboard.routes import asset


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    mount(app)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_page_links_only_allow_listed_assets_with_their_hash(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    links = re.findall(r'(?:src|href)="(static/[^"]+)"', r.text)
    assert sorted(links) == sorted(
        f"static/{name}?v={asset(name).digest}" for name in ("app.css", "app.js", "plotly.min.js")
    )
    assert "{{" not in r.text and "http://" not in r.text and "https://" not in r.text


def test_plotly_comes_from_the_plotly_wheel_gzipped_and_cacheable(client):
    digest = asset("plotly.min.js").digest
    r = client.get(f"/static/plotly.min.js?v={digest}", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["content-encoding"] == "gzip"
    assert "immutable" in r.headers["cache-control"] and r.headers["etag"] == f'"{digest}"'
    assert b"plotly.js v" in r.content[:200]  # httpx decoded the gzip body
    raw = client.get("/static/plotly.min.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.headers["cache-control"] == "no-cache"
    assert gzip.decompress(asset("plotly.min.js").gzipped) == raw.content


def test_a_known_etag_is_answered_with_304(client):
    etag = client.get("/static/app.js").headers["etag"]
    r = client.get("/static/app.js", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""


@pytest.mark.parametrize(
    "name", ["index.html", "routes.py", "widgetbundle.js", "...", "app.js.map"]
)
def test_names_outside_the_allow_list_are_json_404(client, name):
    r = client.get(f"/static/{name}")
    assert r.status_code == 404
    assert r.json() == {"error": "NotFoundError", "message": f"static file {name!r} not found"}


@pytest.mark.parametrize(
    "path",
    ["/static/..%2Froutes.py", "/static/..%2F..%2Fpyproject.toml", "/static/%2Fetc%2Fpasswd"],
)
def test_encoded_paths_never_reach_a_file(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "root:" not in r.text and "[project]" not in r.text and "import" not in r.text


def test_dashboard_routes_stay_out_of_the_api_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/dashboard", "/static/{name}"} & set(paths)
