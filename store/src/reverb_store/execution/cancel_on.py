"""Cancelling runs from events: a function's `cancel_on`, stored, checked, and applied.

A function's cancel_on (`functions.cancel_on`, migration 0017: a JSON list, NULL without)
becomes, for each run of it, one **cancellation wait** per entry: a row of `reverb.waits`
with the empty step id (no step has one) and the entry's index as `position`, keyed like
a step's wait on (event name, match path, the value the run's triggering event has
there), with the entry's CEL condition, `not_before` = the run's creation (events
accepted earlier never cancel it) and `expires_at` = creation + timeout. The rows are
inserted by the trigger on run creation (`reverb.runs_created`, with the function
timeouts' first deadline: one join per statement, whichever statement creates runs), and
deleted when the run ends (`runs_ended`, whose WHEN reads the run's own `cancel_waits`
flag, so other runs pay one boolean test).

An event meets them through the waits' path: its (name, path) is in `wait_keys` (added
at registration, `register_wait_keys`), so its acceptance enqueues a `match_waits` job,
whose candidates query finds the cancellation waits by the same index as step waits
(`waits.match_events`). The job cancels each run met with `cancel_run` in its
transaction, with error RunCancelled naming the event, and records the pair in
`reverb.event_cancellations` (`GET /events/{id}` lists it as `cancelled`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import orjson

from reverb_store.execution.cancellation import CANCELLABLE, cancel_run, cancelled_error
from reverb_store.execution.gates import NO_GATES, Gates
from reverb_store.expressions import ExpressionError, compile_expression
from reverb_store.ids import EventId, FunctionId, RunId

# The step id of a cancellation wait's rows in `reverb.waits`: no step has it (the SDK
# refuses an empty step id).
CANCEL_STEP = ""

# At most this many cancel_on entries per function (the SDK's limit too).
MAX_CANCEL_ON = 5

# The variables a cancel_on condition may read, as a wait's: the run's triggering event
# and the candidate.
VARIABLES = frozenset({"event", "async"})

# Ten years, like a function's timeouts.
MAX_TIMEOUT = timedelta(days=3660)


@dataclass(frozen=True, slots=True)
class CancelCondition:
    """One `reverb.CancelOn`: the event name, a match ("data.order_id", None for none), a
    CEL condition (None for none) and how long after a run's creation it applies (None:
    the run's whole life)."""

    event: str
    match: str | None = None
    condition: str | None = None
    timeout: timedelta | None = None

    def path(self) -> tuple[str, ...]:
        """The match's path in the events' data: "data.a.b" is ("a", "b")."""
        return tuple(self.match.split(".")[1:]) if self.match else ()

    def document(self) -> dict[str, object]:
        body: dict[str, object] = {"event": self.event, "path": list(self.path())}
        if self.match is not None:
            body["match"] = self.match
        if self.condition is not None:
            body["if"] = self.condition
        if self.timeout is not None:
            body["timeout_ms"] = self.timeout // timedelta(milliseconds=1)
        return body


def document(conditions: Sequence[CancelCondition]) -> list[dict[str, object]]:
    """The stored (and hashed) form: a list of {"event", "path", "match"?, "if"?,
    "timeout_ms"?}."""
    return [condition.document() for condition in conditions]


def to_json(conditions: Sequence[CancelCondition]) -> str | None:
    """The `functions.cancel_on` column's text; None (NULL) for no cancel_on."""
    if not conditions:
        return None
    return orjson.dumps(document(conditions)).decode()


def parse(text: str | None) -> tuple[CancelCondition, ...]:
    """The conditions `functions.cancel_on` holds (its text; None for none)."""
    if text is None:
        return ()
    return tuple(
        CancelCondition(
            str(item["event"]),
            item.get("match"),
            item.get("if"),
            timedelta(milliseconds=item["timeout_ms"]) if "timeout_ms" in item else None,
        )
        for item in orjson.loads(text)
    )


def check(function_id: str, conditions: Sequence[CancelCondition]) -> None:
    """ValueError, naming the function and the entry, unless every condition can be
    stored: a name, a match path into the data, a condition that compiles over `event`
    and `async`, a positive timeout of at most ten years."""
    where = f"function {function_id!r}"
    if len(conditions) > MAX_CANCEL_ON:
        raise ValueError(f"{where}: {len(conditions)} cancel_on events, at most {MAX_CANCEL_ON}")
    for index, condition in enumerate(conditions):
        what = f"{where}: cancel_on[{index}]"
        name = condition.event
        if not name.strip() or len(name) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError(f"{what}: event {name[:80]!r} is not an event name")
        if condition.match is not None:
            parts = condition.match.split(".")
            if len(parts) < 2 or parts[0] != "data" or not all(part.strip() for part in parts):
                raise ValueError(
                    f"{what}: match {condition.match[:80]!r} must name a field of the events'"
                    " data, like 'data.order_id'"
                )
        if condition.condition is not None:
            try:
                compile_expression(condition.condition, variables=VARIABLES, what=f"{what}.if_")
            except ExpressionError as error:
                raise ValueError(str(error)) from None
        if condition.timeout is not None and not (timedelta(0) < condition.timeout <= MAX_TIMEOUT):
            raise ValueError(f"{what}: timeout must be longer than zero and at most ten years")


def wait_keys(conditions: Sequence[CancelCondition]) -> list[tuple[str, tuple[str, ...]]]:
    """The (event name, match path) pairs the conditions' waits are keyed by."""
    return list(dict.fromkeys((condition.event, condition.path()) for condition in conditions))


_KEY_EXISTS = """
SELECT EXISTS (SELECT FROM reverb.wait_keys WHERE event_name = $1 AND match_path = $2::text[])
"""


async def missing_wait_keys(
    connection: asyncpg.Connection, keys: Sequence[tuple[str, tuple[str, ...]]]
) -> list[tuple[str, tuple[str, ...]]]:
    """Those of `keys` not yet in `reverb.wait_keys` (rows are never removed). Read before
    the registering transaction, so that it takes the table's lock before any read of it
    (as `waits.record_wait` does)."""
    return [key for key in keys if not await connection.fetchval(_KEY_EXISTS, key[0], key[1])]


async def register_wait_keys(
    connection: asyncpg.Connection, keys: Sequence[tuple[str, tuple[str, ...]]]
) -> None:
    """Add the keys to `reverb.wait_keys` under its ACCESS EXCLUSIVE lock (in the caller's
    transaction, the registration's): an event of the name accepted after the
    registration commits gets a `match_waits` job, so it meets every run created after."""
    if not keys:
        return
    await connection.execute("LOCK TABLE reverb.wait_keys IN ACCESS EXCLUSIVE MODE")
    await connection.executemany(
        "INSERT INTO reverb.wait_keys (event_name, match_path) VALUES ($1, $2::text[])"
        " ON CONFLICT DO NOTHING",
        [(name, list(path)) for name, path in keys],
    )


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A run an event cancels: which of its function's cancel_on entries it met."""

    run_id: RunId
    position: int
    event_id: EventId
    event_name: str
    function_id: FunctionId


_RECORD = """
INSERT INTO reverb.event_cancellations (run_id, event_id, function_id, position)
VALUES ($1, $2, $3, $4)
ON CONFLICT (run_id) DO NOTHING
"""


def cancelled_by_event(cancellation: Cancellation) -> str:
    """The message of the RunCancelled error a run cancelled by an event records."""
    return (
        f"cancelled by event {cancellation.event_id} ({cancellation.event_name}):"
        f" cancel_on[{cancellation.position}] of function {cancellation.function_id!r}"
    )


async def cancel_matched(
    connection: asyncpg.Connection,
    cancellations: Sequence[Cancellation],
    gates: Gates = NO_GATES,
) -> list[RunId]:
    """Cancel each run (in the caller's transaction, its row already locked), unless it
    ended meanwhile; record who cancelled it. Returns the runs cancelled now."""
    cancelled = []
    for cancellation in sorted(cancellations, key=lambda c: c.run_id):
        error = cancelled_error(cancelled_by_event(cancellation))
        previous = await cancel_run(connection, cancellation.run_id, error=error, gates=gates)
        if previous in CANCELLABLE:
            await connection.execute(
                _RECORD,
                cancellation.run_id,
                cancellation.event_id,
                cancellation.function_id,
                cancellation.position,
            )
            cancelled.append(cancellation.run_id)
    return cancelled


async def cancellations_of_event(
    connection: asyncpg.Connection, event_id: str
) -> list[tuple[RunId, FunctionId]]:
    """The runs the event cancelled through cancel_on, with their functions, by run id."""
    rows = await connection.fetch(
        "SELECT run_id, function_id FROM reverb.event_cancellations WHERE event_id = $1"
        " ORDER BY run_id",
        event_id,
    )
    return [(RunId(row["run_id"]), FunctionId(row["function_id"])) for row in rows]
