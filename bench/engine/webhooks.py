"""Webhooks: verified GitHub deliveries accepted per second through POST /webhooks/bench.

The same load as the single-event ingest figure (concurrent clients on keep-alive
connections, one delivery per request, back to back), each request signed with the
source's secret (X-Hub-Signature-256) and a delivery id of its own: the gateway verifies
the HMAC of the raw body, then stores the delivery and its event. Also the CPU per
webhook by process (as the single-event figure has it per event), to tell where a gap
between the two figures comes from.
"""

import asyncio
import hashlib
import hmac
import time

import orjson

from bench.engine import cost
from bench.engine.cluster import WEBHOOK_SECRET, WEBHOOK_SOURCE
from bench.engine.session import Engine

FIGURE = "webhooks/s, github preset"


async def single(engine: Engine, requests: int, clients: int) -> dict[str, float]:
    await engine.observer.drain()
    remaining = requests
    secret = WEBHOOK_SECRET.encode()
    path = f"/webhooks/{WEBHOOK_SOURCE}"

    async def client(number: int) -> None:
        nonlocal remaining
        connection = engine.cluster.connection()
        try:
            while remaining > 0:
                remaining -= 1
                body = orjson.dumps({"ref": "refs/heads/main", "n": remaining})
                signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": f"{number}-{remaining}-{time.monotonic_ns()}",
                    "X-Hub-Signature-256": f"sha256={signature}",
                }
                response = await connection.send("POST", path, body, headers)
                if response.status != 202:
                    raise RuntimeError(f"POST {path}: {response.status} {response.body!r}")
        finally:
            await connection.close()

    before = await cost.snapshot(engine)
    began = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(clients))), timeout=300)
    seconds = time.perf_counter() - began
    await engine.observer.drain()
    engine.touched()
    return {FIGURE: requests / seconds, **await cost.per(engine, before, requests, "webhook")}
