"""The keys a run counts under, from CEL expressions over its triggering event.

A key is the function's (or, for an app-scoped concurrency limit, the app's) name for
the limit, then the JSON of the expression's value, so `1` and `"1"` are different
keys. An expression that fails on an event (a missing field, a type error) gives the
key `null`: every such run shares one key, and none is lost. Long values are hashed.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import asyncpg
import orjson

from reverb_store.expressions import Expression, ExpressionError
from reverb_store.flow.options import PRIORITY_RANGE, key_expression, priority_expression
from reverb_store.ids import RunId

# Separates a key's parts: never in a function id, and escaped by JSON in a value.
SEPARATOR = "\x1f"
_MAX_VALUE_LENGTH = 256

_EVENT = """
SELECT r.created_at, e.id, e.name, e.data::text AS data, e.ts
FROM reverb.runs r LEFT JOIN reverb.events e ON e.id = r.event_ids[1]
WHERE r.id = $1
"""


@dataclass(frozen=True, slots=True)
class RunEvent:
    """What a run's keys and priority are computed from."""

    created_at: datetime
    # The activation of the expressions: {"event": {...}} ({} for a run without one).
    activation: dict[str, Any]


async def run_event(connection: asyncpg.Connection, run_id: RunId) -> RunEvent:
    row = await connection.fetchrow(_EVENT, run_id)
    if row is None:
        raise LookupError(f"run {run_id!r} does not exist")
    event: dict[str, Any] = {}
    if row["id"] is not None:
        event = {
            "id": row["id"],
            "name": row["name"],
            "data": orjson.loads(row["data"]),
            "ts": row["ts"].isoformat(),
        }
    return RunEvent(row["created_at"], {"event": event})


def key(prefix: str, source: str | None, what: str, event: RunEvent | None) -> str:
    """The key `source` gives the run, under `prefix` (a function or an app); `event`
    may be None when `source` is (the key is then the prefix's alone)."""
    expression = _key(source, what)
    if expression is None:
        return f"{prefix}{SEPARATOR}"
    if event is None:
        raise ValueError(f"{what}: a key expression needs the run's event")
    try:
        value = orjson.dumps(expression.evaluate(event.activation)).decode()
    except (ExpressionError, TypeError):
        value = "null"
    if len(value) > _MAX_VALUE_LENGTH:
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return f"{prefix}{SEPARATOR}{source}{SEPARATOR}{value}"


def priority(source: str | None, what: str, event: RunEvent) -> int:
    """Seconds of advance: the expression's number, clamped to -600..600 (0 on failure)."""
    if source is None:
        return 0
    try:
        value = _priority(source, what).evaluate(event.activation)
    except ExpressionError:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    low, high = PRIORITY_RANGE
    return int(min(max(value, low), high))


@lru_cache(maxsize=1024)
def _key(source: str | None, what: str) -> Expression | None:
    return key_expression(source, what)


@lru_cache(maxsize=1024)
def _priority(source: str, what: str) -> Expression:
    return priority_expression(source, what)
