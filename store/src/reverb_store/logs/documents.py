"""Log documents: one per notable moment of an event or a run, and per user log line.

A document is what every sink stores and the logs API returns:
`{"id", "timestamp", "level", "message", "meta": {"event_id", "event_name", "run_id",
"function_id", "step_id", "attempt", "error"?}, "trace_id", "span_id"}` (plus `kind`, the
moment it records, and `fields`, a user log line's keyword arguments).
Every listing is ordered by (timestamp, id).
"""

import itertools
import random
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

import orjson

from reverb_store.execution.records import ErrorRecord

Level = Literal["debug", "info", "warning", "error"]
LEVELS: Final[tuple[Level, ...]] = ("debug", "info", "warning", "error")

# The moments the engine records (`kind`); a user log line is USER.
EVENT_RECEIVED = "event.received"
EVENT_SENT = "event.sent"
EVENT_DEAD_LETTERED = "event.dead_lettered"
RUN_STARTED = "run.started"
RUN_COMPLETED = "run.completed"
RUN_FAILED = "run.failed"
RUN_CANCELLED = "run.cancelled"
RUN_DEAD_LETTERED = "run.dead_lettered"
STEP_COMPLETED = "step.completed"
STEP_FAILED = "step.failed"
RETRY_SCHEDULED = "retry.scheduled"
SLEEP_STARTED = "sleep.started"
WAIT_RESOLVED = "wait.resolved"
HOST_UNREACHABLE = "host.unreachable"
USER = "user"

# The kinds /logs/dead-letter lists, by its `type`.
DEAD_LETTERS: Final[dict[str, tuple[str, ...]]] = {
    "event": (EVENT_DEAD_LETTERED,),
    "function": (RUN_DEAD_LETTERED,),
    "all": (EVENT_DEAD_LETTERED, RUN_DEAD_LETTERED),
}

# Ids are 63-bit integers counted up from a random start, one count per process (the
# order is the timestamp's; the id breaks ties): documents a process records within one
# timestamp (a loop of ctx.logger lines within one of MongoDB's milliseconds) list in the
# order recorded, and two processes' ranges almost surely never meet (2^62 starts).
# A counter costs far less than urandom or a UUID object, on the step path.
_ids = itertools.count(random.SystemRandom().getrandbits(62))


def new_log_id() -> int:
    return next(_ids)


def show_id(log_id: int) -> str:
    """A document id as the API and MongoDB show it: 16 hex digits (sorted as the ints)."""
    return f"{log_id:016x}"


def read_id(text: str) -> int:
    """The id `show_id` made; ValueError for any other text."""
    if len(text) != 16:
        raise ValueError("a log id is 16 hex digits")
    return int(text, 16)


class LogDocument(NamedTuple):
    """One document (a tuple: built on the step path, so it must cost little)."""

    id: int
    timestamp: datetime
    level: Level
    kind: str
    message: str
    event_id: str | None = None
    event_name: str | None = None
    run_id: str | None = None
    function_id: str | None = None
    step_id: str | None = None
    attempt: int | None = None
    error: ErrorRecord | None = None
    # JSON text of an object: a user log line's keyword arguments.
    fields: str | None = None
    trace_id: str | None = None
    span_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The document as the logs API shows it."""
        meta: dict[str, Any] = {
            "event_id": self.event_id,
            "event_name": self.event_name,
            "run_id": self.run_id,
            "function_id": self.function_id,
            "step_id": self.step_id,
            "attempt": self.attempt,
        }
        if self.error is not None:
            meta["error"] = {
                "type": self.error.type,
                "message": self.error.message,
                "stack": self.error.stack,
            }
        document: dict[str, Any] = {
            "id": show_id(self.id),
            "timestamp": self.timestamp,
            "level": self.level,
            "kind": self.kind,
            "message": self.message,
            "meta": meta,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }
        if self.fields is not None:
            document["fields"] = orjson.loads(self.fields)
        return document


def trace_ids(traceparent: str | None) -> tuple[str | None, str | None]:
    """(trace_id, span_id) of a W3C traceparent ("00-<32 hex>-<16 hex>-<flags>")."""
    if traceparent is None or len(traceparent) != 55:
        return None, None
    return traceparent[3:35], traceparent[36:52]
