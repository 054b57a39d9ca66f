"""Ingest: events accepted per second through POST /events.

Concurrent clients on keep-alive connections, in the bench's one process, send
requests back to back until the count is reached; the figure is events accepted
(202) per second of wall time. No function is triggered by these events, but
each request still commits its fan-out job, which the worker then processes.
"""

import asyncio
import time

from bench.engine import cost
from bench.engine.events import Event, post
from bench.engine.session import Engine


async def _send(engine: Engine, requests: int, clients: int, per_request: int) -> float:
    """Seconds taken to have `requests` requests of `per_request` events accepted."""
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        connection = engine.cluster.connection()
        try:
            while remaining > 0:
                remaining -= 1
                body: Event | list[Event]
                if per_request == 1:
                    body = {"name": "bench.ingest", "data": {"n": remaining}}
                else:
                    body = [{"name": "bench.ingest", "data": {"n": i}} for i in range(per_request)]
                ids = await post(connection, body)
                if len(ids) != per_request:
                    raise RuntimeError(f"{len(ids)} ids for {per_request} events")
        finally:
            await connection.close()

    began = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), timeout=300)
    return time.perf_counter() - began


async def single(engine: Engine, requests: int, clients: int) -> dict[str, float]:
    """Also the CPU per event by process, the fan-out jobs' processing included."""
    await engine.observer.drain()
    before = await cost.snapshot(engine)
    seconds = await _send(engine, requests, clients, 1)
    await engine.observer.drain()
    engine.touched()
    return {
        "events/s, 1 per request": requests / seconds,
        **await cost.per(engine, before, requests, "event"),
    }


async def batched(engine: Engine, requests: int, clients: int, size: int) -> dict[str, float]:
    await engine.observer.drain()
    seconds = await _send(engine, requests, clients, size)
    engine.touched()
    return {f"events/s, {size} per request": requests * size / seconds}
