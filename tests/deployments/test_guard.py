"""Request guards: token buckets by hand, the ASGI middleware on a real FastAPI app.

The buckets run on a clock the tests advance by hand, so what a bucket allows depends on
the requests made and the time said to pass, never on how fast this machine runs them.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import Body, FastAPI

from kitrade.config import Settings
from kitrade.deployments.guard import RequestGuard, TokenBuckets


class ManualClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_token_bucket_refills_at_its_rate():
    b = TokenBuckets(rate=2.0, burst=3)
    assert [b.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("k", now=0.0) == 0.5  # empty: next token in 1/rate s
    assert b.take("other", now=0.0) == 0.0  # buckets are per client
    assert b.take("k", now=0.6) == 0.0  # refilled 1.2 tokens
    assert TokenBuckets(rate=0, burst=1).take("k") == 0.0  # off


def test_token_bucket_reads_its_injected_clock_and_forgets_the_least_recent_client():
    clock = ManualClock()
    b = TokenBuckets(rate=0.5, burst=2, max_clients=2, clock=clock)
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 2.0]
    clock.advance(1.0)  # half a token back: one more second to wait
    assert b.take("a") == 1.0
    clock.advance(1.0)
    assert b.take("a") == 0.0
    clock.advance(60.0)  # a long pause refills to the burst, no further
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 2.0]
    b.take("b")
    b.take("c")  # a third client: "a", the least recently used, is dropped
    assert list(b._b) == ["b", "c"]
    assert b.take("a") == 0.0  # back with a full bucket


def _app(clock: ManualClock | None = None, **limits) -> httpx.AsyncClient:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict = Body(...)) -> dict:
        return {"n": len(body.get("text", ""))}

    @app.get("/read")
    async def read() -> dict:
        return {"ok": True}

    settings = Settings(_env_file=None, **limits)
    guarded = RequestGuard(app, settings, clock=clock or ManualClock())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t")


def test_oversized_bodies_get_413_by_length_and_while_streaming():
    async def go() -> None:
        async with _app(max_body_bytes=2048) as c:
            ok = await c.post("/echo", json={"text": "x" * 100})
            assert ok.status_code == 200 and ok.json() == {"n": 100}
            big = await c.post("/echo", json={"text": "x" * 5000})
            assert big.status_code == 413 and "at most 2048 bytes" in big.json()["message"]

            async def chunks():
                yield b'{"text": "'
                for _ in range(10):
                    yield b"y" * 1000
                yield b'"}'

            streamed = await c.post("/echo", content=chunks())  # chunked: no Content-Length
            assert streamed.status_code == 413, streamed.text

    asyncio.run(go())


def test_rate_limit_per_key_with_retry_after():
    clock = ManualClock()

    async def go() -> None:
        limits = {"rate_limit_per_s": 1.0, "rate_limit_burst": 3, "api_key": "key-a"}
        async with _app(clock, **limits) as c:
            a = {"Authorization": "Bearer key-a"}
            codes = [(await c.post("/echo", json={}, headers=a)).status_code for _ in range(5)]
            assert codes == [200, 200, 200, 429, 429]
            limited = await c.post("/echo", json={}, headers=a)
            assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
            assert limited.json() == {
                "error": "RateLimited",
                "message": "rate limit: expected at most 1 POST requests/s (burst 3) per client; "
                "retry after 1s",
            }
            clock.advance(1.0)  # one token back, one request through
            again = [(await c.post("/echo", json={}, headers=a)).status_code for _ in range(2)]
            assert again == [200, 429]
            b = {"Authorization": "Bearer key-b"}  # not the key: counts as its address
            assert (await c.post("/echo", json={}, headers=b)).status_code == 200
            reads = [(await c.get("/read", headers=a)).status_code for _ in range(10)]
            assert reads == [200] * 10  # reads are not limited by default

    asyncio.run(go())


def test_read_rate_limit_applies_to_gets_when_set():
    clock = ManualClock()

    async def go() -> None:
        limits = {"read_rate_limit_per_s": 0.5, "rate_limit_burst": 2}
        async with _app(clock, **limits) as c:
            reads = [(await c.get("/read")).status_code for _ in range(3)]
            assert reads == [200, 200, 429]
            limited = await c.get("/read")
            assert limited.headers["retry-after"] == "2"
            assert "at most 0.5 GET requests/s" in limited.json()["message"]
            clock.advance(2.0)
            assert (await c.get("/read")).status_code == 200
            clock.advance(0.5)  # a quarter token: 1.5 s to wait, rounded up to whole seconds
            assert (await c.get("/read")).headers["retry-after"] == "2"

    asyncio.run(go())


def test_made_up_bearer_values_are_limited_as_one_client_and_the_real_key_keeps_its_bucket():
    """A new random bearer value on each request gets no fresh burst: the 200 requests share
    the address's bucket, create no bucket of their own, and the real key is untouched."""
    import secrets

    async def go() -> None:
        limits = {"rate_limit_per_s": 0.5, "rate_limit_burst": 5, "api_key": "the-real-key"}
        async with _app(**limits) as c:
            guard = c._transport.app  # type: ignore[attr-defined]
            codes = []
            for _ in range(200):
                bogus = {"Authorization": f"Bearer {secrets.token_hex(16)}"}
                codes.append((await c.post("/echo", json={}, headers=bogus)).status_code)
            assert codes == [200] * 5 + [429] * 195, codes
            anonymous = await c.post("/echo", json={})  # the same address, no key at all
            assert anonymous.status_code == 429
            real = {"Authorization": "Bearer the-real-key"}
            mine = [(await c.post("/echo", json={}, headers=real)).status_code for _ in range(5)]
            assert mine == [200] * 5  # its own full burst
            assert len(guard._writes._b) == 2  # the address and the key, nothing more

    asyncio.run(go())
