"""The pgqueuer jobs Reverb enqueues: entrypoint names and their payloads.

The gateway and the worker agree on these; nothing else crosses the queue.
Jobs are hints that work is due: the state they act on lives in Reverb's own
tables, so a job that finds nothing to do simply ends.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import orjson
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.queries import Queries

PROCESS_EVENT = "process_event"
ADVANCE_RUN = "advance_run"


@dataclass(frozen=True, slots=True)
class ProcessEvent:
    """Fan the events out to the runs they trigger."""

    event_ids: tuple[str, ...]
    traceparent: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"event_ids": self.event_ids, "traceparent": self.traceparent})

    @classmethod
    def decode(cls, payload: bytes) -> "ProcessEvent":
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


async def enqueue(
    connection: asyncpg.Connection,
    jobs: Sequence[ProcessEvent | AdvanceRun],
    delays: Sequence[timedelta | None] | None = None,
) -> None:
    """Enqueue jobs on `connection`, so they commit with the caller's transaction."""
    if not jobs:
        return
    entrypoints = [PROCESS_EVENT if isinstance(job, ProcessEvent) else ADVANCE_RUN for job in jobs]
    await Queries(AsyncpgDriver(connection)).enqueue(
        entrypoints,
        [job.encode() for job in jobs],
        [0] * len(jobs),
        list(delays) if delays is not None else None,
    )
