"""Request guards: token buckets by hand, the ASGI middleware on a real FastAPI app."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import Body, FastAPI

from kitrade.config import Settings
from kitrade.deployments.guard import RequestGuard, TokenBuckets


def test_token_bucket_refills_at_its_rate():
    b = TokenBuckets(rate=2.0, burst=3)
    assert [b.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("k", now=0.0) == 0.5  # empty: next token in 1/rate s
    assert b.take("other", now=0.0) == 0.0  # buckets are per client
    assert b.take("k", now=0.6) == 0.0  # refilled 1.2 tokens
    assert TokenBuckets(rate=0, burst=1).take("k") == 0.0  # off


def _app(**limits) -> httpx.AsyncClient:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict = Body(...)) -> dict:
        return {"n": len(body.get("text", ""))}

    @app.get("/read")
    async def read() -> dict:
        return {"ok": True}

    settings = Settings(_env_file=None, **limits)
    guarded = RequestGuard(app, settings)
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
    async def go() -> None:
        async with _app(rate_limit_per_s=1.0, rate_limit_burst=3, api_key="key-a") as c:
            a = {"Authorization": "Bearer key-a"}
            codes = [(await c.post("/echo", json={}, headers=a)).status_code for _ in range(5)]
            assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
            limited = await c.post("/echo", json={}, headers=a)
            assert int(limited.headers["retry-after"]) >= 1
            assert "rate limit" in limited.json()["message"]
            b = {"Authorization": "Bearer key-b"}  # not the key: counts as its address
            assert (await c.post("/echo", json={}, headers=b)).status_code == 200
            reads = [(await c.get("/read", headers=a)).status_code for _ in range(10)]
            assert reads == [200] * 10  # reads are not limited by default

    asyncio.run(go())


def test_made_up_bearer_values_are_limited_as_one_client_and_the_real_key_keeps_its_bucket():
    """A new random bearer value on each request gets no fresh burst: the 200 requests share
    the address's bucket, create no bucket of their own, and the real key is untouched."""
    import secrets

    async def go() -> None:
        async with _app(rate_limit_per_s=0.5, rate_limit_burst=5, api_key="the-real-key") as c:
            guard = c._transport.app  # type: ignore[attr-defined]
            codes = []
            for _ in range(200):
                bogus = {"Authorization": f"Bearer {secrets.token_hex(16)}"}
                codes.append((await c.post("/echo", json={}, headers=bogus)).status_code)
            assert codes.count(200) <= 6 and codes.count(429) >= 194, codes
            anonymous = await c.post("/echo", json={})  # the same address, no key at all
            assert anonymous.status_code == 429
            real = {"Authorization": "Bearer the-real-key"}
            mine = [(await c.post("/echo", json={}, headers=real)).status_code for _ in range(5)]
            assert mine == [200] * 5  # its own full burst
            assert len(guard._writes._b) == 2  # the address and the key, nothing more

    asyncio.run(go())
