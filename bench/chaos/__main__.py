"""`python -m bench.chaos` (`make chaos`, `make chaos-short`): the engine under kill -9.

Starts a gateway, several workers and several hosts of bench/chaos/app.py as separate
processes on an embedded PostgreSQL of its own, sends a load of runs (several steps each,
some with a durable sleep), kills random workers and hosts with SIGKILL during the load
(starting each again), restarts PostgreSQL once in the middle, waits for the engine to
settle, then checks (bench/chaos/check.py) and prints a table; the figures go to
bench/results/chaos.json, the services' logs to bench/results/chaos/. The exit status is
1 when an accepted event was lost, a run is stuck or a step was recorded twice.
"""

import argparse
import asyncio
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.chaos import check, database, load, logs, mesh, report
from bench.chaos.kills import Monkey
from reverb_store import migrate

RESULTS = Path(__file__).resolve().parents[1] / "results"


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument(
        "--short", action="store_true", help="the CI form: 150 runs, 40 s, 10 kills"
    )
    parser.add_argument("--runs", type=int, help="runs to start (default 1500; short 150)")
    parser.add_argument("--kills", type=int, help="kill -9s during the load (default 40; short 10)")
    parser.add_argument("--seconds", type=float, help="length of the load (default 120; short 40)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--settle", type=float, default=120, help="seconds to wait for the runs")
    parser.add_argument("--seed", type=int, help="random seed (default: the time)")
    parser.add_argument("--output", type=Path, default=RESULTS / "chaos.json")
    return parser.parse_args(argv)


def _defaults(options: argparse.Namespace) -> None:
    runs, kills, seconds = (150, 10, 40.0) if options.short else (1500, 40, 120.0)
    options.runs = options.runs if options.runs is not None else runs
    options.kills = options.kills if options.kills is not None else kills
    options.seconds = options.seconds if options.seconds is not None else seconds
    options.seed = options.seed if options.seed is not None else int(time.time())


async def _ready(http: httpx.AsyncClient, connection: asyncpg.Connection, hosts: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        registered = await connection.fetchval("SELECT count(*) FROM reverb.app_hosts")
        try:
            response = await http.get("/functions")
        except httpx.HTTPError:
            response = None
        if registered >= hosts and response is not None and response.status_code == 200:
            return
        await asyncio.sleep(0.2)
    raise SystemExit("the engine was not ready after 90 s; see bench/results/chaos/")


async def _settle(url: str, accepted: int, within: float) -> float:
    """Seconds until every accepted event's run finished (or `within` ran out)."""
    started = time.monotonic()
    connection = await asyncpg.connect(url)
    try:
        while time.monotonic() - started < within:
            if await check.finished(connection, accepted):
                break
            await asyncio.sleep(0.5)
    finally:
        await connection.close()
    return time.monotonic() - started


async def run(base: database.Database, options: argparse.Namespace) -> dict[str, Any]:
    folder = RESULTS / "chaos"
    shutil.rmtree(folder, ignore_errors=True)
    step_log = folder / "steps.jsonl"
    connection = await asyncpg.connect(base.url)
    await migrate(connection)
    engine = mesh.build(
        base.url,
        workers=options.workers,
        hosts=options.hosts,
        logs=folder,
        step_log=step_log,
        heartbeat_timeout=5,
    )
    engine.start()
    chooser = random.Random(options.seed)
    events = load.plan(options.runs, options.seed)
    try:
        address = f"http://127.0.0.1:{mesh.http_port(engine)}"
        async with httpx.AsyncClient(base_url=address, timeout=5) as http:
            await _ready(http, connection, options.hosts)
            await connection.close()
            sender = load.Sender(http, events)
            monkey = Monkey(engine, base, chooser)
            load_started = time.time()
            await asyncio.gather(
                sender.send(options.seconds, deadline=time.monotonic() + options.seconds + 60),
                monkey.run(
                    options.kills,
                    options.seconds * 0.85,
                    options.seconds / 2,
                    down=2,
                    quiet=options.seconds / 6,
                ),
            )
            load_ended = sender.finished_at
        settled = await _settle(base.url, len(sender.accepted), options.settle)
        monkey.revive_exited()
    finally:
        engine.stop()
    connection = await asyncpg.connect(base.url)
    try:
        sent = {event["id"]: event for event in events}
        findings = await check.check(connection, sent, set(sender.accepted), step_log)
    finally:
        await connection.close()
    return report.figures(
        options,
        findings,
        monkey,
        sender,
        (load_started, load_ended),
        settled,
        logs.errors(folder),
    )


def main(argv: list[str]) -> int:
    options = arguments(argv)
    _defaults(options)
    with database.embedded() as base:
        figures = asyncio.run(run(base, options))
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(report.dumps(figures))
    print(report.table(figures))
    print(f"\nJSON: {options.output}; logs: {RESULTS / 'chaos'}")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
