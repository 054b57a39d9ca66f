"""Cron: how late 1,000 schedules due in the same second fire.

Each repetition registers an app of 1,000 functions (straight through the store's
registration, as RegisterApp does, with no host: only the firing is measured), each
with a 6-field cron due at one second a few seconds ahead. The worker's `cron_tick`
job fires them all; a tick's lateness is its event's `received_at` (the transaction
that stored the event and created the run) minus its `scheduled_at`. The app is then
registered empty, so its runs end (FunctionRemoved) and its schedules go.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.engine.session import Engine
from bench.latency import percentiles
from reverb_store.control import (
    AppDefinition,
    FunctionDefinition,
    HostLease,
    TriggerDefinition,
    register_app,
)

SCHEDULES = 1_000
FIGURE = f"fire lateness, {SCHEDULES:,} schedules due at once"
APP = "bench-cron"
# How far ahead of the registration the shared tick is.
LEAD = timedelta(seconds=4)
LEASE = HostLease("127.0.0.1:1", timedelta(seconds=1))

_FIRED = """
SELECT extract(epoch FROM received_at - ts) * 1000 AS late FROM reverb.events
WHERE name = 'reverb/cron' AND ts = $1 AND id LIKE 'reverb-cron:bench-cron-%'
"""


async def measure(engine: Engine) -> dict[str, float]:
    await engine.observer.drain()
    connection = await asyncpg.connect(engine.cluster.database_url)
    try:
        tick = (datetime.now(UTC) + LEAD).replace(microsecond=0)
        expression = f"{tick.second} {tick.minute} {tick.hour} {tick.day} {tick.month} *"
        trigger = TriggerDefinition(cron=expression)
        functions = tuple(
            FunctionDefinition(f"{APP}-{number:04d}", f"{APP}-{number:04d}", 0, (trigger,))
            for number in range(SCHEDULES)
        )
        await register_app(connection, AppDefinition(APP, functions), LEASE)
        if datetime.now(UTC) >= tick - timedelta(milliseconds=500):
            raise RuntimeError("registering the schedules took too long to measure the tick")
        late = await _fired(connection, tick, within=60)
        await register_app(connection, AppDefinition(APP, ()), LEASE)
    finally:
        await connection.close()
    engine.touched()
    return percentiles(FIGURE, late)


async def _fired(connection: asyncpg.Connection, tick: datetime, within: float) -> list[float]:
    deadline = time.monotonic() + within
    while True:
        rows = await connection.fetch(_FIRED, tick)
        if len(rows) == SCHEDULES:
            return [float(row["late"]) for row in rows]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(rows)} of {SCHEDULES} schedules fired")
        await asyncio.sleep(0.2)
