"""Run gates: the interface of the rules a run must pass before it executes.

`admission` says when each question is asked; `Gates` is what a worker registers.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

import asyncpg

from reverb_store import jobs
from reverb_store.execution.records import RunStatus
from reverb_store.flow.options import NO_FLOW, FlowOptions, parse
from reverb_store.ids import AppId, FunctionId, JobId, RunId


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """The function a run belongs to, as a gate sees it (when the run is created, decided
    on, or freed)."""

    function_id: FunctionId
    app_id: AppId
    # Its flow-control options, as registered (NO_FLOW once the function is removed).
    flow: FlowOptions = NO_FLOW


@dataclass(frozen=True, slots=True)
class Candidate:
    """A run about to execute, as a gate sees it (its row is locked)."""

    run_id: RunId
    function_id: FunctionId
    app_id: AppId
    # queued (new or retried, or held before), sleeping or waiting (a resume), or running
    # (a takeover: a crashed job's run, admitted before).
    status: RunStatus
    # 0-based attempt of the function.
    attempt: int
    # Invocations so far: 0 for a run that never started.
    invocations: int
    # The function's flow-control options (NO_FLOW once it is removed).
    flow: FlowOptions = NO_FLOW


@dataclass(frozen=True, slots=True)
class Admit:
    """The run may execute."""


ADMIT = Admit()


@dataclass(frozen=True, slots=True)
class Hold:
    """The run waits, `queued`, until capacity frees (or until `until`, if given).

    `reason` is what the run waits on, shown as `GET /runs/{id}` `waiting_on.kind`
    ("concurrency", "throttle", "paused", ...), with `until`.
    """

    reason: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """The run will not execute: it ends `cancelled`."""

    reason: str


Verdict = Admit | Hold | Skip


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a claim returns when a gate did not admit the run."""

    gate: str
    verdict: Hold | Skip


@dataclass(frozen=True, slots=True)
class Freed:
    """A gated run stopped executing; `status` is the one it has now."""

    run_id: RunId
    function_id: FunctionId
    app_id: AppId
    status: RunStatus
    flow: FlowOptions = NO_FLOW


@dataclass(frozen=True, slots=True)
class HandedRun:
    """A held run a free handed capacity to, with its job, picked for the freeing worker."""

    run_id: RunId
    job_id: JobId
    traceparent: str | None


class Handover:
    """The freeing worker drives the held runs its frees admit, itself.

    Given to `Gates.freed_many` by a transition on a worker: a gate that hands capacity to
    a held run (the concurrency gate's slot) inserts the run's job picked by the worker's
    queue manager, in the transition, when `room()` says the worker has a slot for it
    (`book` books one), and records it (`handed`). Once the transition commits, the
    worker runs those jobs at once: no notification, no dequeue. Should it not (it died,
    the commit failed after all), pgqueuer hands the jobs on once their heartbeat is old.
    Without room, the job is queued for any worker, as without a Handover.
    """

    __slots__ = ("_book", "_spare", "queue_manager_id", "runs")

    def __init__(self, queue_manager_id: UUID, book: Callable[[int], int]) -> None:
        self.queue_manager_id = queue_manager_id
        self._book = book
        # Slots booked and not used yet.
        self._spare = 0
        self.runs: list[HandedRun] = []

    def room(self) -> bool:
        """Whether the worker has a slot for one more handed run (booked now if needed)."""
        if self._spare == 0:
            self._spare = self._book(1)
        return self._spare > 0

    def handed(self, run: HandedRun) -> None:
        """A run was handed capacity, its job picked for this worker (after `room()`)."""
        self._spare -= 1
        self.runs.append(run)


class Gate(Protocol):
    """A rule every run of the functions it applies to must pass before it executes."""

    @property
    def name(self) -> str: ...

    def applies(self, function: FunctionRef) -> bool:
        """Whether runs of `function` must pass this gate: asked in memory when a run is
        created (stored as `runs.gated`), and to choose the gates that decide and are told."""
        ...

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        """Admit, hold or skip the run (inside the claim's transaction)."""
        ...

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        """Capacity `run` held is free: `wake` what it admits (inside the transition)."""
        ...


class Gates:
    """The gates a worker registered, in the order they decide."""

    def __init__(self, gates: Sequence[Gate] = ()) -> None:
        self._gates = tuple(gates)
        names = [gate.name for gate in self._gates]
        if len(set(names)) != len(names):
            raise ValueError(f"run gates need distinct names, not {names}")

    def __bool__(self) -> bool:
        return bool(self._gates)

    def applies(self, function: FunctionRef) -> bool:
        """Whether any gate applies to runs of `function`."""
        return any(gate.applies(function) for gate in self._gates)

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Refusal | None:
        """The first refusal of a gate that applies to the run, or None when all admit it."""
        function = FunctionRef(candidate.function_id, candidate.app_id, candidate.flow)
        for gate in self._gates:
            if not gate.applies(function):
                continue
            verdict = await gate.decide(connection, candidate)
            if not isinstance(verdict, Admit):
                return Refusal(gate.name, verdict)
        return None

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        """Tell the gates that apply to the run's function that it stopped executing."""
        await self.freed_many(connection, [run])

    async def freed_many(
        self,
        connection: asyncpg.Connection,
        runs: Sequence[Freed],
        handover: Handover | None = None,
    ) -> None:
        """`freed` for several runs in one transaction (a group commit's): a gate with a
        `freed_many` of its own is told of its runs at once (the concurrency gate frees
        all their slots in one statement, locking shards in one order), with the
        `handover` of the worker committing the transition, if any."""
        for gate in self._gates:
            mine = [
                run
                for run in runs
                if gate.applies(FunctionRef(run.function_id, run.app_id, run.flow))
            ]
            if not mine:
                continue
            many = getattr(gate, "freed_many", None)
            if many is not None:
                await many(connection, mine, handover)
            else:
                for run in mine:
                    await gate.freed(connection, run)


NO_GATES = Gates()


async def wake(connection: asyncpg.Connection, run_id: RunId) -> bool:
    """Enqueue an `advance_run` for a queued run no job drives (a held one), committed
    with the caller's transaction: a gate's `freed` calls it. False when the run is not
    queued (it started or ended meanwhile)."""
    traceparent = await connection.fetchval(
        "SELECT coalesce(traceparent, '') FROM reverb.runs"
        " WHERE id = $1 AND status = 'queued' AND job_id IS NULL",
        run_id,
    )
    if traceparent is None:
        return False
    await jobs.enqueue(connection, [jobs.AdvanceRun(run_id, traceparent or None)])
    return True


# A transition's RETURNING column of a gated run's function's options, for `tell_freed`.
FREED_FLOW = (
    "CASE WHEN gated THEN (SELECT f.flow::text FROM reverb.functions f"
    " WHERE f.id = function_id) END AS flow"
)


def freed_of(row: asyncpg.Record, status: RunStatus, flow: str | None) -> Freed:
    """The `Freed` of a transition's RETURNING row (see `tell_freed`)."""
    return Freed(row["id"], row["function_id"], row["app_id"], status, parse(flow))


async def tell_freed(
    connection: asyncpg.Connection, gates: Gates, row: asyncpg.Record, status: RunStatus
) -> None:
    """Tell the gates a run stopped executing, if it is gated. `row` is the transition's
    RETURNING: `gated`, `id`, `function_id`, `app_id`, and `flow` (its function's options,
    `FREED_FLOW`) if the transition read them; otherwise they are read here (one
    primary-key probe, for gated runs only)."""
    if row["gated"] and gates:
        try:
            flow = row["flow"]
        except KeyError:
            flow = await connection.fetchval(
                "SELECT flow::text FROM reverb.functions WHERE id = $1", row["function_id"]
            )
        await gates.freed(connection, freed_of(row, status, flow))
