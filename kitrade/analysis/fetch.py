"""Fetching a knowledge document from a URL without server-side request forgery.

``fetch_document`` accepts only ``http``/``https`` URLs whose host resolves to
public addresses: loopback, private, link-local (cloud metadata at
169.254.169.254 included), shared, multicast, reserved and unspecified
addresses are refused, for IPv4, IPv6 and IPv4-mapped IPv6 alike. The
connection goes to the address that was checked (the Host header and TLS name
stay the URL's), so a DNS answer that changes between the check and the
connection cannot redirect it. Redirects are followed by hand, at most
``max_redirects``, each target checked the same way. The body is capped at
``max_bytes`` and must be text (plain, Markdown or HTML; HTML is reduced to
its text).

``allow`` names ``host:port`` pairs exempt from the address check (a test's
server on 127.0.0.1, an intranet wiki); ``KITRADE_FETCH_ALLOW`` sets it.
"""

from __future__ import annotations

import html as htmllib
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from kitrade.errors import InvalidInputError, UpstreamError

__all__ = ["FetchedDocument", "check_url", "fetch_document"]

_TEXT_TYPES = ("text/plain", "text/markdown", "text/x-markdown", "text/html")


@dataclass(frozen=True)
class FetchedDocument:
    """A fetched text document."""

    url: str
    text: str
    title: str | None
    content_type: str


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for what, flag in (
        ("loopback", ip.is_loopback),
        ("private", ip.is_private),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
    ):
        if flag:
            return what
    if not ip.is_global:
        return "not globally routable"
    return None


def check_url(url: str, allow: frozenset[str] = frozenset()) -> tuple[str, str, int, str]:
    """Validate ``url``; returns (scheme, host, port, address to connect to).

    Raises:
        InvalidInputError: not http(s), no host, or a host that resolves to a
            refused address (the message says which and why).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError(
            f"url: expected an http(s) URL, was {url[:200]!r} ({exc})"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"url: expected an http(s) URL with a host, was {url[:200]!r}")
    if parts.username or parts.password:
        raise InvalidInputError("url: credentials in URLs are not accepted")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInputError(f"url: cannot resolve host {host!r} ({exc.strerror})") from None
    addresses = [str(info[4][0]) for info in infos]
    if f"{host}:{port}" in allow:
        return parts.scheme, host, port, addresses[0]
    for addr in addresses:
        why = _refused(ipaddress.ip_address(addr.split("%", 1)[0]))
        if why is not None:
            raise InvalidInputError(
                f"url: host {host!r} resolves to {addr}, a {why} address; refused "
                "(only public addresses can be fetched)"
            )
    return parts.scheme, host, port, addresses[0]


_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _html_text(html: str) -> tuple[str, str | None]:
    m = _TITLE.search(html)
    title = htmllib.unescape(m.group(1)).strip() if m else None
    text = htmllib.unescape(_TAGS.sub(" ", html))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line), title


def fetch_document(
    url: str,
    *,
    allow: frozenset[str] = frozenset(),
    max_bytes: int = 2_000_000,
    max_redirects: int = 3,
    timeout_s: float = 10.0,
) -> FetchedDocument:
    """Fetch ``url`` as text, refusing non-public targets (see the module doc).

    Raises:
        InvalidInputError: a refused URL or redirect target, a non-text body.
        UpstreamError: the server failed, timed out or sent too much.
    """
    current = url
    for _ in range(max_redirects + 1):
        scheme, host, port, addr = check_url(current, allow)
        parts = urlsplit(current)
        ip_host = f"[{addr}]" if ":" in addr else addr
        target = f"{scheme}://{ip_host}:{port}{parts.path or '/'}"
        if parts.query:
            target += f"?{parts.query}"
        headers = {"Host": host if port in (80, 443) else f"{host}:{port}", "Accept": "text/*"}
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        try:
            with (
                httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as c,
                c.stream("GET", target, headers=headers, extensions=extensions) as r,
            ):
                if r.is_redirect:
                    location = r.headers.get("location")
                    if not location:
                        raise UpstreamError(f"{url}: redirect without a Location header")
                    current = urljoin(current, location)
                    continue
                if not r.is_success:
                    raise UpstreamError(f"{url}: expected HTTP 2xx, was {r.status_code}")
                ctype = r.headers.get("content-type", "text/plain").split(";")[0].strip().lower()
                if ctype not in _TEXT_TYPES:
                    raise InvalidInputError(
                        f"url: expected a text document ({', '.join(_TEXT_TYPES)}), was {ctype}"
                    )
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise UpstreamError(f"{url}: document larger than {max_bytes} bytes")
                text = body.decode(r.encoding or "utf-8", errors="replace")
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{url}: fetch failed ({type(exc).__name__})") from None
        title = None
        if ctype == "text/html":
            text, title = _html_text(text)
        return FetchedDocument(url=current, text=text, title=title, content_type=ctype)
    raise InvalidInputError(f"url: more than {max_redirects} redirects")
