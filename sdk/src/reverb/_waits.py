"""Waiting for events: `reverb.Wait`, the checks a wait's arguments get at the call site,
and the step output a resolved wait turns back into.

A match path names a field of the events' data (`"data.order_id"`, `"data.customer.id"`):
the awaited event must have the value the run's triggering event has there. A condition
(`if_`) is a CEL expression over `event` (the trigger) and `async` (the candidate); the
SDK checks its form, the gateway compiles the literal ones at registration
(`_wait_sources`), and the worker compiles every one when the step is reported (a bad
one fails the step for good, error type InvalidWait, naming the function and the step).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reverb._errors import StepArgumentError
from reverb._event import Event
from reverb._protocol import WaitCondition

# Longer names and expressions are refused: the gateway accepts event names of at most
# 256 characters, and the engine expressions of at most 4,096.
MAX_EVENT_NAME = 256
MAX_CONDITION = 4096


@dataclass(frozen=True)
class Wait:
    """One event `wait_for_any` / `wait_for_all` accept: its name, the data path it must
    share with the run's event (`match="data.order_id"`), and a CEL condition (`if_`)
    over `event` (the trigger) and `async` (the candidate)."""

    event: str
    match: str | None = None
    if_: str | None = None


def condition_of(wait: Wait, what: str) -> WaitCondition:
    """The protocol's condition for `wait`, checked (StepArgumentError naming `what`)."""
    if not isinstance(wait, Wait):
        raise StepArgumentError(f"{what}: a wait is a reverb.Wait(...), not {wait!r}")
    return WaitCondition(
        _event_name(wait.event, what), _match(wait.match, what), _condition(wait.if_, what)
    )


def conditions_of(waits: Sequence[Wait], what: str) -> tuple[WaitCondition, ...]:
    if isinstance(waits, str | bytes) or not isinstance(waits, Sequence) or not waits:
        raise StepArgumentError(f"{what} needs a non-empty list of reverb.Wait, not {waits!r}")
    return tuple(condition_of(wait, f"{what}, wait {index}") for index, wait in enumerate(waits))


def resolved(output: Any) -> tuple[int, Event] | None:
    """The (index, event) a resolved wait's output holds; None for a timeout."""
    if output is None:
        return None
    event = output["event"]
    ts = datetime.fromisoformat(event["ts"])
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(output["index"]), Event(event["id"], event["name"], event["data"], ts)


def _event_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise StepArgumentError(f"{what}: the event name must be a non-empty string, not {name!r}")
    if len(name) > MAX_EVENT_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise StepArgumentError(
            f"{what}: {name!r} is not an event name (at most {MAX_EVENT_NAME} characters,"
            " no control characters)"
        )
    return name


def _match(match: object, what: str) -> str | None:
    if match is None:
        return None
    if not isinstance(match, str):
        raise StepArgumentError(f"{what}: match must be a string like 'data.order_id'")
    parts = match.split(".")
    if len(parts) < 2 or parts[0] != "data" or not all(part.strip() for part in parts):
        raise StepArgumentError(
            f"{what}: match {match!r} must name a field of the events' data, like 'data.order_id'"
        )
    if "\x00" in match or len(match) > MAX_CONDITION:
        raise StepArgumentError(f"{what}: match {match[:80]!r} is not a field path")
    return match


def _condition(condition: object, what: str) -> str | None:
    if condition is None:
        return None
    if not isinstance(condition, str) or not condition.strip():
        raise StepArgumentError(f"{what}: if_ must be a non-empty CEL expression, or None")
    if len(condition) > MAX_CONDITION or "\x00" in condition:
        raise StepArgumentError(
            f"{what}: if_ must be at most {MAX_CONDITION} characters without NUL"
        )
    return condition
