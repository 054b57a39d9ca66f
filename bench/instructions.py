"""`python -m bench.instructions`: instructions per step (and per event) by process, counted
by valgrind's callgrind: an A/B figure that does not move with the machine's load.

Seconds and CPU time on a shared 2-core machine move by 20-50% from one run to the next
(CPU time per step doubles when another process is busy), so a change of a few percent
cannot be seen in `make bench`'s figures there. Instructions can: the same code on the
same input executes the same instructions, within about 2% here (scheduling changes
how work is batched), whatever else the machine does.

The worker and the host (or, with `--workload ingest`, the gateway) run under
`valgrind --tool=callgrind --instr-atstart=no`: at native speed apart from valgrind's
translation until the measured workload, which is counted alone (`callgrind_control`
zeroes the counters and turns instrumentation on after a warm-up, then dumps them).
The engine is otherwise the bench's own (`bench.engine.cluster`), on a fresh database.

It counts Python's and every library's instructions, not PostgreSQL's (see the
`pg_stat_statements` recipe in CONTRIBUTING.md for the database's side), and an
instruction of a cache-missing load costs more than one of arithmetic: read it beside
`make bench`, not instead. Needs valgrind (Debian's package `valgrind`).

    python -m bench.instructions --label before          # on one checkout
    python -m bench.instructions --label after           # on the other
"""

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench import database, server
from bench.engine import ingest, throughput
from bench.engine.otlp_receiver import receiver_process
from bench.engine.session import Engine

STEPS = 10
WARM_UP_RUNS = 50
WARM_UP_EVENTS = 200
INGEST_CLIENTS = 8
# One database per run: two checkouts measured at once (before and after) must not share it.
DATABASE = f"reverb_bench_instructions_{os.getpid()}"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--label", default="", help="a name for this checkout in the output")
    parser.add_argument(
        "--workload",
        choices=("steps", "ingest"),
        default="steps",
        help="steps: runs of the 10-step function (worker, host); "
        "ingest: single-event POST /events (gateway)",
    )
    parser.add_argument(
        "--count", type=int, default=300, help="runs (steps workload) or events (ingest)"
    )
    parser.add_argument(
        "--otlp",
        action="store_true",
        help="every service exports its spans over OTLP/gRPC to a receiver process "
        "(the bench's `traces` section), batch processor at the SDK's defaults",
    )
    parser.add_argument(
        "--unsigned",
        action="store_true",
        help="worker→host calls not signed (no REVERB_SIGNING_KEY, REVERB_HOST_INSECURE=true: "
        "the `signing` section's unsigned engine)",
    )
    parser.add_argument(
        "--dumps",
        type=Path,
        help="keep callgrind's dumps in this folder (for callgrind_annotate), "
        "else in a temporary one",
    )
    return parser.parse_args(argv)


def _control(*arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments], check=True, stdout=subprocess.DEVNULL)


def _total(folder: Path, name: str) -> int:
    """The instructions in `name`'s dumps (the one `callgrind_control -d` wrote)."""
    total = 0
    for dump in folder.glob(f"{name}.*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


async def measure(
    workload: str, count: int, folder: Path, *, otlp: bool = False, unsigned: bool = False
) -> dict[str, float]:
    """Thousands of instructions per step (or event) of each process measured; with `otlp`,
    of a cluster exporting its spans to a receiver process (the `traces` section's); with
    `unsigned`, of one whose worker→host calls are not signed (the `signing` section's)."""
    async with contextlib.AsyncExitStack() as stack:
        environment: dict[str, str | None] = {}
        if otlp:
            receiver = await stack.enter_async_context(receiver_process())
            environment |= {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            }
        if unsigned:
            environment |= {"REVERB_SIGNING_KEY": None, "REVERB_HOST_INSECURE": "true"}
        return await _measure(workload, count, folder, environment)


async def _measure(
    workload: str, count: int, folder: Path, environment: Mapping[str, str | None]
) -> dict[str, float]:
    measured = ("gateway",) if workload == "ingest" else ("worker", "host")
    prefixes = {
        name: (
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={folder}/{name}.%p",
        )
        for name in measured
    }
    url = await database.create(server.LOCAL_URL, DATABASE)
    engine = await Engine.start(url, environment, within=600, prefixes=prefixes)
    try:
        if workload == "ingest":
            await ingest.single(engine, WARM_UP_EVENTS, INGEST_CLIENTS)
        else:
            await throughput.measure(engine, WARM_UP_RUNS, STEPS)
        pids = [str(engine.cluster.processes[name].pid) for name in measured]
        for pid in pids:
            _control("--zero", pid)
            _control("--instr=on", pid)
        if workload == "ingest":
            await ingest.single(engine, count, INGEST_CLIENTS)
            units = count
        else:
            await throughput.measure(engine, count, STEPS)
            units = count * STEPS
        for pid in pids:
            _control("--instr=off", pid)
            _control("--dump", pid)
    finally:
        await engine.stop()
        await database.drop(server.LOCAL_URL, DATABASE)
    return {name: _total(folder, name) / units / 1000 for name in measured}


def main(argv: Sequence[str] | None = None) -> int:
    options = _arguments(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (Debian: apt install valgrind)", file=sys.stderr)
            return 2
    with contextlib.ExitStack() as stack:
        if options.dumps is None:
            folder = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="reverb-callgrind-"))
            )
        else:
            folder = options.dumps.resolve()
            folder.mkdir(parents=True, exist_ok=True)
        figures = asyncio.run(
            measure(
                options.workload,
                options.count,
                folder,
                otlp=options.otlp,
                unsigned=options.unsigned,
            )
        )
    unit = "event" if options.workload == "ingest" else "step"
    described = "  ".join(
        f"{name} {value:.1f}k instructions/{unit}" for name, value in figures.items()
    )
    print(f"{options.label or options.workload}: {described}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
