"""Fan-out: one event that triggers every bench-fanout-NN function; time until all runs end."""

import time

from bench.engine.events import post
from bench.engine.session import Engine


async def measure(engine: Engine, functions: int) -> dict[str, float]:
    await engine.observer.drain()
    connection = engine.cluster.connection()
    try:
        began = time.time()
        ids = await post(connection, {"name": "bench.fanout", "data": {}})
    finally:
        await connection.close()
    last_ended = await engine.observer.wait_finished(ids, functions, within=120, interval=0.02)
    engine.touched()
    failed = await engine.observer.failed(ids)
    if failed:
        raise RuntimeError(f"{failed} of {functions} fan-out runs did not complete")
    return {f"all {functions} runs completed": (last_ended.timestamp() - began) * 1000}
