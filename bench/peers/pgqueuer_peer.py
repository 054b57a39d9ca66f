"""PgQueuer raw, one worker process: no-op jobs/s and enqueue→start latency.

Run as `python -m bench.peers.pgqueuer_peer jobs COUNT` or
`python -m bench.peers.pgqueuer_peer latency RATE SECONDS`, with the database in
BENCH_DATABASE_URL. Prints one JSON object; the harness summarizes it.
"""

import asyncio
import os
import sys
import time

import asyncpg
import orjson
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.core.qm import QueueManager
from pgqueuer.models import Job
from pgqueuer.queries import Queries

BATCH_SIZE = 10


async def install(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(connection))
        if not await queries.has_table(queries.qbe.settings.queue_table):
            await queries.install()
        await connection.execute(f"DELETE FROM {queries.qbe.settings.queue_table}")
    finally:
        await connection.close()


async def jobs(url: str, count: int) -> dict[str, float]:
    """Queue `count` no-op jobs, then time one worker draining them."""
    producer = await asyncpg.connect(url)
    consumer = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(producer))
        for start in range(0, count, 1000):
            size = min(1000, count - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        manager = QueueManager(Queries(AsyncpgDriver(consumer)))
        started: list[float] = []
        done = asyncio.Event()

        @manager.entrypoint("noop")
        async def noop(job: Job) -> None:
            started.append(time.perf_counter())
            if len(started) >= count:
                done.set()

        worker = asyncio.create_task(manager.run(batch_size=BATCH_SIZE))
        await asyncio.wait_for(done.wait(), timeout=120)
        manager.shutdown.set()
        await asyncio.wait_for(worker, timeout=30)
    finally:
        await producer.close()
        await consumer.close()
    return {"jobs_per_s": (count - 1) / (started[-1] - started[0])}


async def latency(url: str, rate: float, seconds: float) -> dict[str, list[float]]:
    """Enqueue one job every 1/rate s (one transaction each); time enqueue → handler start."""
    producer = await asyncpg.connect(url)
    consumer = await asyncpg.connect(url)
    count = int(rate * seconds)
    sent: dict[int, float] = {}
    began: dict[int, float] = {}
    done = asyncio.Event()
    try:
        manager = QueueManager(Queries(AsyncpgDriver(consumer)))

        @manager.entrypoint("noop")
        async def noop(job: Job) -> None:
            began[int(job.payload or b"0")] = time.time()
            if len(began) >= count:
                done.set()

        worker = asyncio.create_task(manager.run(batch_size=BATCH_SIZE))
        queries = Queries(AsyncpgDriver(producer))
        await asyncio.sleep(0.5)  # let the worker LISTEN before the first job
        origin = time.monotonic()
        for index in range(count):
            pause = origin + index / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            sent[index] = time.time()
            await queries.enqueue("noop", str(index).encode())
        await asyncio.wait_for(done.wait(), timeout=seconds + 30)
        manager.shutdown.set()
        await asyncio.wait_for(worker, timeout=30)
    finally:
        await producer.close()
        await consumer.close()
    return {"start_ms": [(began[index] - sent[index]) * 1000 for index in range(count)]}


async def main(arguments: list[str]) -> None:
    url = os.environ["BENCH_DATABASE_URL"]
    await install(url)
    if arguments[0] == "jobs":
        result: object = await jobs(url, int(arguments[1]))
    else:
        result = await latency(url, float(arguments[1]), float(arguments[2]))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
