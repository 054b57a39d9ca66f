"""`python -m bench`: measure Reverb and its peers on this machine's PostgreSQL.

Prints one table (median, min, max of every figure; targets marked pass/FAIL)
and writes the same figures, with the machine's description, to
bench/results/latest.json. `--quick` is the CI smoke check (under 2 minutes):
the exit status is 1 when Reverb itself could not be measured, never because a
target was missed or a peer could not be installed.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

from bench import machine, report, server, suite, table, targets
from bench.config import FULL, QUICK
from bench.results import Results


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, 1 repetition (CI smoke check)"
    )
    parser.add_argument(
        "--repetitions", type=int, help="repetitions of every figure (default 5; quick 1)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="SECTION",
        help=f"only these sections: {', '.join(suite.SECTIONS)} (scaling only when named)",
    )
    parser.add_argument(
        "--skip-peers", action="store_true", help="measure no peer (PgQueuer, DBOS, Graphile)"
    )
    parser.add_argument(
        "--skip-engine", action="store_true", help="measure only the peers and the floor"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the figures, one step-throughput run under py-spy (bench/results/profiles/)",
    )
    parser.add_argument(
        "--keep-databases", action="store_true", help="leave the bench databases in place"
    )
    parser.add_argument(
        "--output", type=Path, default=report.RESULTS / "latest.json", help="JSON output"
    )
    return parser.parse_args(argv)


def configure_logging() -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def main(argv: list[str]) -> int:
    options = arguments(argv)
    configure_logging()
    with contextlib.ExitStack() as stack:
        explicit = server.explicit_url()
        if explicit:
            return await measure(options, explicit, [])
        if await server.reachable(server.LOCAL_URL):
            return await measure(options, server.LOCAL_URL, [])
        url = stack.enter_context(server.embedded_url())
        note = "no PostgreSQL on 127.0.0.1:5432: an embedded server was started for this run"
        return await measure(options, url, [note])


async def measure(options: argparse.Namespace, server_url: str, notes: list[str]) -> int:
    sizes = QUICK if options.quick else FULL
    if options.repetitions:
        sizes = dataclasses.replace(sizes, repetitions=options.repetitions)
    settings = suite.Options(
        sizes=sizes,
        server=server_url,
        sections=suite.selected(options.only),
        peers=not options.skip_peers,
        engine=not options.skip_engine,
        keep_databases=options.keep_databases,
        profile=options.profile,
        group_budget=90.0 if options.quick else 1800.0,
    )
    mode = "quick" if options.quick else "full"
    results = Results(notes=notes)
    if options.quick:
        results.notes.append(
            f"quick mode: {sizes.repetitions} repetition(s) and reduced sizes "
            f"({sizes.throughput_runs} runs, {sizes.sleep_runs} sleepers, "
            f"{sizes.latency_seconds:.0f} s of latency): a smoke check, not the figures of record"
        )
    elif sizes.repetitions < 5:
        results.notes.append(f"{sizes.repetitions} repetition(s) only: not the figures of record")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.monotonic()
    described = await machine.describe(server_url)
    await suite.run(settings, results)
    targets.judge(results)
    title = [
        f"Reverb benchmark ({mode}) {started_at}: {described['cpu_model']}, "
        f"{described['cores']} cores, "
        f"{described['memory_gib']} GiB, PostgreSQL {described['postgresql']} "
        f"(synchronous_commit={described['synchronous_commit']}), Python {described['python']}",
        f"median of {sizes.repetitions} repetition(s), with min and max; "
        "compared systems interleaved (A B A B ...)",
    ]
    print(table.render(results, title))
    seconds = time.monotonic() - began
    report.write(
        options.output, report.document(results, described, mode, sizes, started_at, seconds)
    )
    print(f"wrote {options.output} ({seconds:.0f} s)")
    # A smoke check: the run fails when Reverb could not be measured; a peer that
    # cannot be installed here, or a target missed, does not fail it.
    return 1 if any(missing.system == "Reverb" for missing in results.missing) else 0


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main(sys.argv[1:])))
    else:
        sys.exit(uvloop.run(main(sys.argv[1:])))
