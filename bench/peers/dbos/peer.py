# mypy: disable-error-code="import-not-found,untyped-decorator"
"""DBOS Transact, one process: the 10-step workflow through a queue, and the 1-step latency.

    python peer.py workflow RUNS STEPS
    python peer.py latency RATE SECONDS

Runs in its own virtual environment (bench/peers/dbos/.venv); the database is
BENCH_DATABASE_URL. Prints one JSON object for the harness.
"""

import asyncio
import json
import os
import sys
import time

import psycopg
from dbos import DBOS, DBOSConfig, Queue

URL = os.environ["BENCH_DATABASE_URL"]
# DBOS polls its queues; the default is once a second. 50 ms keeps the latency
# comparison about the engine rather than the poll period, at a modest query rate.
POLLING_INTERVAL = 0.05

config: DBOSConfig = {
    "name": "reverb-bench",
    "system_database_url": URL,
    "log_level": "WARNING",
}
DBOS(config=config)
started: dict[int, float] = {}


@DBOS.step()
async def small(index: int) -> dict[str, object]:
    return {"index": index, "ok": True}


@DBOS.step()
async def first(index: int) -> dict[str, object]:
    started[index] = time.time()
    return {"index": index, "ok": True}


@DBOS.workflow()
async def many_steps(steps: int) -> int:
    for index in range(steps):
        await small(index)
    return steps


@DBOS.workflow()
async def one_step(index: int) -> int:
    await first(index)
    return index


def successes(connection: psycopg.Connection, name: str) -> int:
    row = connection.execute(
        "SELECT count(*) FROM dbos.workflow_status WHERE name LIKE %s AND status = 'SUCCESS'",
        (f"%{name}",),
    ).fetchone()
    return int(row[0]) if row else 0


async def wait_for(connection: psycopg.Connection, name: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while successes(connection, name) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: fewer than {count} workflows succeeded")
        await asyncio.sleep(0.05)


async def workflow(queue: Queue, runs: int, steps: int) -> dict[str, float]:
    with psycopg.connect(URL, autocommit=True) as connection:
        began = time.time()
        for _ in range(runs):
            await queue.enqueue_async(many_steps, steps)
        enqueued = time.time() - began
        await wait_for(connection, "many_steps", runs, within=600)
        row = connection.execute(
            "SELECT max(updated_at) FROM dbos.workflow_status WHERE name LIKE %s",
            ("%many_steps",),
        ).fetchone()
    ended = int(row[0]) / 1000 if row and row[0] else time.time()
    seconds = ended - began
    return {
        "seconds": seconds,
        "enqueue_s": enqueued,
        "runs_per_s": runs / seconds,
        "steps_per_s": runs * steps / seconds,
    }


async def latency(queue: Queue, rate: float, seconds: float) -> dict[str, list[float]]:
    count = int(rate * seconds)
    sent: dict[int, float] = {}
    ids: dict[int, str] = {}
    with psycopg.connect(URL, autocommit=True) as connection:
        origin = time.monotonic()
        for index in range(count):
            pause = origin + index / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            sent[index] = time.time()
            handle = await queue.enqueue_async(one_step, index)
            ids[index] = handle.get_workflow_id()
        await wait_for(connection, "one_step", count, within=seconds + 60)
        rows = connection.execute(
            "SELECT workflow_uuid, updated_at FROM dbos.workflow_status WHERE name LIKE %s",
            ("%one_step",),
        ).fetchall()
    ended = {str(row[0]): int(row[1]) / 1000 for row in rows}
    return {
        "start_ms": [(started[index] - sent[index]) * 1000 for index in range(count)],
        "complete_ms": [(ended[ids[index]] - sent[index]) * 1000 for index in range(count)],
    }


async def main(arguments: list[str]) -> None:
    DBOS.launch()
    with psycopg.connect(URL, autocommit=True) as connection:
        # Rows of earlier repetitions.
        connection.execute("DELETE FROM dbos.operation_outputs")
        connection.execute("DELETE FROM dbos.workflow_status")
    queue = await DBOS.register_queue_async("bench", polling_interval_sec=POLLING_INTERVAL)
    try:
        if arguments[0] == "workflow":
            result: object = await workflow(queue, int(arguments[1]), int(arguments[2]))
        else:
            result = await latency(queue, float(arguments[1]), float(arguments[2]))
    finally:
        DBOS.destroy()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
