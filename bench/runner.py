"""Repetitions of compared systems, interleaved: A B A B … so drift hits every system alike."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from bench.results import Results

log = structlog.get_logger("bench")


@dataclass(frozen=True, slots=True)
class Probe:
    """One repetition of one measurement of one system: returns figure name → value."""

    section: str
    system: str
    measure: Callable[[], Awaitable[Mapping[str, float]]]
    units: Mapping[str, str]
    # Upper bound on one repetition, in seconds.
    timeout: float = 300.0


async def run_interleaved(
    probes: Sequence[Probe], repetitions: int, results: Results, deadline: float
) -> None:
    """Run every probe `repetitions` times, round-robin; a probe that fails is dropped.

    `deadline` (time.monotonic()) bounds the whole group: repetitions not started
    by then are skipped and noted.
    """
    failed: set[int] = set()
    for repetition in range(repetitions):
        for index, probe in enumerate(probes):
            if index in failed:
                continue
            if time.monotonic() > deadline:
                results.notes.append(
                    f"{probe.section} / {probe.system}: time budget spent after "
                    f"{repetition} repetitions"
                )
                failed.add(index)
                continue
            started = time.monotonic()
            try:
                values = await asyncio.wait_for(probe.measure(), probe.timeout)
            except Exception as error:  # a failing system is reported, the others go on
                log.warning(
                    "probe failed", section=probe.section, system=probe.system, error=repr(error)
                )
                results.miss(probe.section, probe.system, f"failed: {error!r}"[:300])
                failed.add(index)
                continue
            log.info(
                "measured",
                section=probe.section,
                system=probe.system,
                repetition=repetition + 1,
                seconds=round(time.monotonic() - started, 1),
                values={name: round(value, 2) for name, value in values.items()},
            )
            results.add(probe.section, probe.system, values, probe.units)
