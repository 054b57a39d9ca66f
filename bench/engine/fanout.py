"""Fan-out: one event that triggers every bench-fanout-NN function; time until all runs end."""

import time

from bench.engine.events import post
from bench.engine.observe import Scope
from bench.engine.session import Engine


async def measure(engine: Engine, functions: int) -> dict[str, float]:
    await engine.observer.drain()
    connection = engine.cluster.connection()
    scope = Scope.starting_now(*(f"bench-fanout-{number:02d}" for number in range(functions)))
    try:
        began = time.time()
        await post(connection, {"name": "bench.fanout", "data": {}})
    finally:
        await connection.close()
    last_ended = await engine.observer.wait_finished(scope, functions, within=120, interval=0.02)
    engine.touched()
    failed = await engine.observer.failed(scope)
    if failed:
        raise RuntimeError(f"{failed} of {functions} fan-out runs did not complete")
    return {f"all {functions} runs completed": (last_ended.timestamp() - began) * 1000}
