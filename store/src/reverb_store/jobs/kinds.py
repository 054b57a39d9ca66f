"""The job kinds: each kind's pgqueuer entrypoint, payload type and priority, in one table.

A kind's name is the pgqueuer entrypoint its jobs carry, and its payload's encoding
is what they store: jobs already queued in a database must still run, so neither
ever changes. A payload type may be the payload of two kinds, one for the jobs due
at once and one for the jobs enqueued with a delay (an advance of a run is
`advance_run` now and `wake_run` later); `kind_of` picks it.

The store knows the kinds; the worker binds a handler to each one
(`reverb_queue_worker.jobs.entrypoints`) and checks at start that none is missing.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Generic, Literal, Protocol, Self, TypeVar, get_args

import orjson

# Every kind, by the entrypoint its jobs carry in the queue.
KindName = Literal[
    "process_event",
    "advance_run",
    "wake_run",
    "cron_tick",
    "cron_fire",
    "time_out_run",
    "match_waits",
]

# Which of its payload type's jobs a kind carries: all of them ("any"), or, when two
# kinds share a payload type, those due at once ("now") or those delayed ("delayed").
Timing = Literal["now", "delayed", "any"]


class JobPayload(Protocol):
    """What a job carries: a frozen dataclass with its own stored encoding."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[object]]]

    def encode(self) -> bytes: ...

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """The payload from its stored bytes; ValueError, KeyError or TypeError if malformed."""
        ...


@dataclass(frozen=True, slots=True)
class ProcessEvent:
    """Fan the events out to the runs they trigger."""

    event_ids: tuple[str, ...]
    traceparent: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"event_ids": self.event_ids, "traceparent": self.traceparent})

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        body = orjson.loads(payload)
        return cls(tuple(body["event_ids"]), body.get("traceparent"))


@dataclass(frozen=True, slots=True)
class AdvanceRun:
    """Drive one run as far as it can go."""

    run_id: str
    traceparent: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"run_id": self.run_id, "traceparent": self.traceparent})

    @classmethod
    def decode(cls, payload: bytes) -> "AdvanceRun":
        body = orjson.loads(payload)
        return cls(body["run_id"], body.get("traceparent"))


@dataclass(frozen=True, slots=True)
class CronTick:
    """Fire the cron schedules that are due (`reverb_store.cron`): a hint, since the
    schedules' rows say what is due. Its encoding, `{}`, is also written by migration
    0007's trigger."""

    def encode(self) -> bytes:
        return b"{}"

    @classmethod
    def decode(cls, payload: bytes) -> "CronTick":
        if not isinstance(orjson.loads(payload), dict):
            raise ValueError("a cron_tick payload is an object")
        return cls()


@dataclass(frozen=True, slots=True)
class FireCron:
    """Start a run of the function for each of these stored cron events (a schedule
    triggered or backfilled through the API)."""

    function_id: str
    event_ids: tuple[str, ...]

    def encode(self) -> bytes:
        return orjson.dumps({"function_id": self.function_id, "event_ids": self.event_ids})

    @classmethod
    def decode(cls, payload: bytes) -> "FireCron":
        body = orjson.loads(payload)
        return cls(str(body["function_id"]), tuple(str(item) for item in body["event_ids"]))


# Which of a function's timeouts a `time_out_run` job enforces.
TimeoutLimit = Literal["start", "finish"]


@dataclass(frozen=True, slots=True)
class TimeOutRun:
    """Fail the run with FunctionTimeout if it is still in flight when its function's
    `start` (it has not started) or `finish` (it has not ended) limit passes. Its
    encoding is also written by migration 0016's triggers."""

    run_id: str
    limit: TimeoutLimit

    def encode(self) -> bytes:
        return orjson.dumps({"run_id": self.run_id, "limit": self.limit})

    @classmethod
    def decode(cls, payload: bytes) -> "TimeOutRun":
        body = orjson.loads(payload)
        limit = body["limit"]
        if limit not in ("start", "finish"):
            raise ValueError(f"a time_out_run limit is start or finish, not {limit!r}")
        return cls(str(body["run_id"]), limit)


@dataclass(frozen=True, slots=True)
class MatchWaits(ProcessEvent):
    """Resolve the open waits the events meet, and cancel the runs whose cancel_on they
    meet (`reverb_store.execution.matching`); the same fields and encoding as
    ProcessEvent."""


P = TypeVar("P", bound=JobPayload, covariant=True)


@dataclass(frozen=True, slots=True)
class JobKind(Generic[P]):
    """One kind of job: its entrypoint, what it carries, and how soon it is taken."""

    name: KindName
    payload: type[P]
    # Higher first: pgqueuer's dequeue orders by priority, and a worker's takes take
    # the due jobs of higher-priority kinds before the others.
    priority: int
    timing: Timing = "any"

    def sql_columns(self, **fields: str) -> str:
        """SQL for a job's (priority, entrypoint, payload) columns, from SQL expressions of
        the payload's fields (every field, by name): how a statement that builds its jobs
        itself agrees with `encode`."""
        names = [field.name for field in dataclasses.fields(self.payload)]
        if sorted(fields) != sorted(names):
            raise TypeError(f"{self.name} payloads have the fields {names}, not {sorted(fields)}")
        pairs = ", ".join(f"'{name}', {fields[name]}" for name in names)
        payload = f"convert_to(json_build_object({pairs})::text, 'UTF8')"
        return f"{self.priority}, '{self.name}', {payload}"


PROCESS_EVENT = JobKind("process_event", ProcessEvent, priority=0)
ADVANCE_RUN = JobKind("advance_run", AdvanceRun, priority=0, timing="now")
# An advance due at a time (a sleep's end, a retry's backoff, an invoke's timeout, a host
# backoff): taken before other work, so that a run wakes when it said it would.
WAKE_RUN = JobKind("wake_run", AdvanceRun, priority=1, timing="delayed")

# Cron ticks are due at a time, like wake-ups, and taken as promptly.
CRON_TICK = JobKind("cron_tick", CronTick, priority=1)
CRON_FIRE = JobKind("cron_fire", FireCron, priority=0)
# A function timeout's deadline: due at a time, taken as promptly as a wake-up.
TIME_OUT_RUN = JobKind("time_out_run", TimeOutRun, priority=1)

# Waits resolved by accepted events: enqueued with the events whose name a wait used.
MATCH_WAITS = JobKind("match_waits", MatchWaits, priority=0)

KINDS: Mapping[KindName, JobKind[JobPayload]] = {
    kind.name: kind
    for kind in (
        PROCESS_EVENT,
        ADVANCE_RUN,
        WAKE_RUN,
        CRON_TICK,
        CRON_FIRE,
        TIME_OUT_RUN,
        MATCH_WAITS,
    )
}


def _by_payload() -> dict[tuple[type[JobPayload], bool], JobKind[JobPayload]]:
    """The kind of each (payload type, delayed), checked on import: a payload type is
    carried by one kind for all its jobs (timing "any"), or by two, one for its jobs due
    now and one for its delayed jobs."""
    if sorted(KINDS) != sorted(get_args(KindName)):
        raise TypeError("every KindName needs one JobKind in KINDS")
    carriers: dict[type[JobPayload], list[JobKind[JobPayload]]] = {}
    for kind in KINDS.values():
        carriers.setdefault(kind.payload, []).append(kind)
    chosen: dict[tuple[type[JobPayload], bool], JobKind[JobPayload]] = {}
    for payload, kinds in carriers.items():
        timings = sorted(kind.timing for kind in kinds)
        if timings == ["any"]:
            chosen[payload, False] = chosen[payload, True] = kinds[0]
        elif timings == ["delayed", "now"]:
            for kind in kinds:
                chosen[payload, kind.timing == "delayed"] = kind
        else:
            raise TypeError(
                f"{payload.__name__} needs one kind for any timing, or one now and one delayed"
            )
    return chosen


_BY_PAYLOAD = _by_payload()


def kind_of(payload: JobPayload, *, delayed: bool) -> JobKind[JobPayload]:
    """The kind a job with this payload is enqueued as (KeyError: not a job payload)."""
    return _BY_PAYLOAD[type(payload), delayed]
