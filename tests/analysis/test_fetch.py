"""Knowledge from a URL: non-public targets are refused, redirects included; a canary
server on 127.0.0.1 counts every hit it gets."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kitrade.analysis.fetch import check_url, fetch_document
from kitrade.errors import InvalidInputError, UpstreamError


class _Server:
    """A tiny HTTP server on 127.0.0.1: routes path -> (status, headers, body)."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.routes = routes
        self.hits: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                status, headers, body = outer.routes.get(self.path, (404, {}, b"no"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self._srv.server_address[1]}"

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()


@pytest.fixture
def canary():
    s = _Server({"/": (200, {"Content-Type": "text/plain"}, b"secret internal data")})
    yield s
    s.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8265/api/jobs/",
        "http://10.0.0.5/x",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://2130706433/",  # 127.0.0.1 as one integer
        "http://0x7f.1/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pw@example.com/",
    ],
)
def test_non_public_and_odd_urls_are_refused(url):
    with pytest.raises(InvalidInputError) as info:
        check_url(url)
    assert "url:" in info.value.message


def test_canary_sees_zero_hits_directly_or_through_a_redirect(canary):
    for url in (f"http://{canary.hostport}/", f"http://localhost:{canary.hostport.split(':')[1]}/"):
        with pytest.raises(InvalidInputError):
            fetch_document(url)
    # An allowed server (say an intranet wiki) redirecting to the canary is refused too.
    hop = _Server({"/doc": (302, {"Location": f"http://{canary.hostport}/"}, b"")})
    try:
        with pytest.raises(InvalidInputError) as info:
            fetch_document(f"http://{hop.hostport}/doc", allow=frozenset({hop.hostport}))
        assert "loopback" in info.value.message and hop.hits == ["/doc"]
    finally:
        hop.close()
    assert canary.hits == []


def test_allowed_server_text_html_and_limits():
    s = _Server(
        {
            "/a.md": (200, {"Content-Type": "text/markdown"}, b"# Note\n\nEURUSD rallied."),
            "/p.html": (
                200,
                {"Content-Type": "text/html; charset=utf-8"},
                b"<html><title>Desk &amp; notes</title><script>alert(1)</script>"
                b"<p>GOOG <b>beat</b> estimates.</p></html>",
            ),
            "/bin": (200, {"Content-Type": "application/octet-stream"}, b"\x00\x01"),
            "/big": (200, {"Content-Type": "text/plain"}, b"x" * 5000),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/err": (500, {}, b"boom"),
        }
    )
    allow = frozenset({s.hostport})
    base = f"http://{s.hostport}"
    try:
        assert fetch_document(f"{base}/a.md", allow=allow).text.startswith("# Note")
        page = fetch_document(f"{base}/p.html", allow=allow)
        assert page.title == "Desk & notes" and "GOOG beat estimates." in page.text
        assert "alert" not in page.text
        with pytest.raises(InvalidInputError, match="text document"):
            fetch_document(f"{base}/bin", allow=allow)
        with pytest.raises(UpstreamError, match="larger than"):
            fetch_document(f"{base}/big", allow=allow, max_bytes=1000)
        with pytest.raises(InvalidInputError, match="redirects"):
            fetch_document(f"{base}/loop", allow=allow)
        with pytest.raises(UpstreamError, match="500"):
            fetch_document(f"{base}/err", allow=allow)
    finally:
        s.close()
