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
    if row["id"] is None:
        return RunEvent(row["created_at"], {"event": {}})
    document = event_activation(row["id"], row["name"], row["data"], row["ts"])
    return RunEvent(row["created_at"], document)


def event_activation(event_id: str, name: str, data: str, ts: datetime) -> dict[str, Any]:
    """What `event` is in an expression: the event as a function sees it."""
    document = {"id": event_id, "name": name, "data": orjson.loads(data), "ts": ts.isoformat()}
    return {"event": document}


def key(prefix: str, source: str | None, what: str, event: RunEvent | None) -> str:
    """The key `source` gives the run, under `prefix` (a function or an app); `event`
    may be None when `source` is (the key is then the prefix's alone)."""
    if source is None:
        return f"{prefix}{SEPARATOR}"
    if event is None:
        raise ValueError(f"{what}: a key expression needs the run's event")
    computed = value(source, what, event.activation)
    return f"{prefix}{SEPARATOR}{source}{SEPARATOR}{computed or 'null'}"


def value(source: str, what: str, activation: dict[str, Any]) -> str | None:
    """The JSON of the expression's value (hashed when long); None when it fails on this
    activation (a missing field, a type error)."""
    expression = _key(source, what)
    assert expression is not None
    try:
        text = orjson.dumps(expression.evaluate(activation)).decode()
    except (ExpressionError, TypeError):
        return None
    if len(text) > _MAX_VALUE_LENGTH:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


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


_LOCK_SINGLETON = "SELECT pg_advisory_xact_lock(hashtextextended('reverb.singletons:' || $1, 0))"


async def lock_singleton_key(connection: asyncpg.Connection, function_id: str, key: str) -> None:
    """Serialize, until the transaction ends, what is done to one singleton key's runs:
    a new run recorded, a run admitted, a holder's end (`flow.singleton`)."""
    await connection.execute(_LOCK_SINGLETON, f"{function_id}{SEPARATOR}{key}")
