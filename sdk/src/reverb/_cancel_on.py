"""`reverb.CancelOn`: an event that cancels a function's run, as `@app.function(cancel_on=[...])`
declares it.

When a run of the function is created, each CancelOn becomes a cancellation wait keyed on
the run's triggering event: an event of the name, accepted after the run was created,
whose data has at `match` the value the run's event has there, and for which `if_` holds,
cancels the run (as `POST /runs/{id}/cancel` would). The SDK checks the arguments' form;
the engine compiles `if_` when the app registers and refuses the registration, naming the
function, if it does not compile.
"""

from dataclasses import dataclass
from datetime import timedelta

from reverb._durations import Duration, parse_duration

# At most this many per function; longer names and expressions are refused (the gateway
# accepts event names of at most 256 characters, the engine expressions of 4,096).
MAX_CANCEL_ON = 5
MAX_EVENT_NAME = 256
MAX_EXPRESSION = 4096


@dataclass(frozen=True, init=False)
class CancelOn:
    """Cancel a run of the function when an event `event` arrives after the run started.

    `match="data.order_id"`: the event's `data.order_id` must equal the run's triggering
    event's (a run whose event has no such field cannot be cancelled by this CancelOn).
    `if_`: a CEL expression over `event` (the run's triggering event) and `async` (the
    cancelling event), e.g. `"async.data.reason != 'duplicate'"`.
    `timeout`: how long after the run's creation the cancellation applies (a duration:
    `"30m"`, `timedelta`, seconds); None: for the run's whole life.

    The run is cancelled wherever it is: queued, sleeping, waiting, paused, retrying, or
    running (it then stops at its next step boundary); its error is RunCancelled, naming
    the event.
    """

    event: str
    match: str | None
    if_: str | None
    timeout: timedelta | None

    def __init__(
        self,
        event: str,
        match: str | None = None,
        if_: str | None = None,
        timeout: Duration | None = None,
    ) -> None:
        object.__setattr__(self, "event", _event_name(event))
        object.__setattr__(self, "match", _match(match))
        object.__setattr__(self, "if_", _condition(if_))
        object.__setattr__(self, "timeout", _timeout(timeout))


def cancel_on_list(value: object, function_id: str) -> tuple[CancelOn, ...]:
    """`@app.function`'s `cancel_on`: one CancelOn or a list of them (duplicates once)."""
    if value is None:
        return ()
    items: list[object] = list(value) if isinstance(value, list | tuple) else [value]
    for index, item in enumerate(items):
        if not isinstance(item, CancelOn):
            raise TypeError(
                f"function {function_id!r}: cancel_on[{index}] must be reverb.CancelOn(...),"
                f" not {item!r}"
            )
    unique = tuple(dict.fromkeys(item for item in items if isinstance(item, CancelOn)))
    if len(unique) > MAX_CANCEL_ON:
        raise ValueError(
            f"function {function_id!r} has {len(unique)} cancel_on events: at most {MAX_CANCEL_ON}"
        )
    return unique


def _event_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"CancelOn event must be a string, not {name!r}")
    if not name.strip():
        raise ValueError("CancelOn event must be a non-empty event name")
    if len(name) > MAX_EVENT_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(
            f"CancelOn event {name[:80]!r} is not an event name (at most {MAX_EVENT_NAME}"
            " characters, no control characters)"
        )
    return name


def _match(match: object) -> str | None:
    if match is None:
        return None
    if not isinstance(match, str):
        raise TypeError(f"CancelOn match must be a string like 'data.order_id', not {match!r}")
    parts = match.split(".")
    if (
        len(parts) < 2
        or parts[0] != "data"
        or not all(part.strip() for part in parts)
        or "\x00" in match
        or len(match) > MAX_EXPRESSION
    ):
        raise ValueError(
            f"CancelOn match {match[:80]!r} must name a field of the events' data,"
            " like 'data.order_id'"
        )
    return match


def _condition(condition: object) -> str | None:
    if condition is None:
        return None
    if not isinstance(condition, str):
        raise TypeError(f"CancelOn if_ must be a CEL expression (a string), not {condition!r}")
    if not condition.strip():
        raise ValueError("CancelOn if_ must be a non-empty CEL expression, or None")
    if len(condition) > MAX_EXPRESSION or "\x00" in condition:
        raise ValueError(f"CancelOn if_ must be at most {MAX_EXPRESSION} characters without NUL")
    return condition


def _timeout(value: object) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | timedelta):
        raise TypeError(f"CancelOn timeout must be a duration like '30m', not {value!r}")
    try:
        timeout = parse_duration(value)
    except ValueError as error:
        raise ValueError(f"CancelOn timeout: {error}") from None
    if timeout <= timedelta(0):
        raise ValueError(f"CancelOn timeout must be longer than zero, not {value!r}")
    return timeout
