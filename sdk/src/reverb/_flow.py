"""Flow control options of `@app.function`: concurrency, throttling, rate limits, priority.

Keys and the priority are CEL expressions over `event` (the triggering event, as
`event.name`, `event.data`, `event.id`); the engine compiles them when the app
registers and refuses the registration, naming the function and the option, if one is
not valid. The SDK checks only what it can without the engine: types and ranges.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeVar

from reverb._durations import Duration, parse_duration

MAX_CONCURRENCY_LIMITS = 2
PRIORITY_RANGE = (-600, 600)

ConcurrencyScope = Literal["function", "app"]
OptionT = TypeVar("OptionT")


def positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be 1 or more, not {value}")
    return value


def key_source(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a CEL expression over event, or None, not {value!r}")
    return value


def duration_of(value: Duration, what: str) -> timedelta:
    try:
        period = parse_duration(value)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
    if period <= timedelta(0):
        raise ValueError(f"{what} must be longer than zero, not {value!r}")
    return period


@dataclass(frozen=True, init=False)
class Concurrency:
    """At most `limit` runs execute steps at once, per value of `key` (None: one limit).

    Sleeping and waiting runs do not count. `scope="app"` shares the limit of a key with
    every function of the app that names the same key expression.
    """

    limit: int
    key: str | None
    scope: ConcurrencyScope

    def __init__(
        self, limit: int, key: str | None = None, scope: ConcurrencyScope = "function"
    ) -> None:
        object.__setattr__(self, "limit", positive(limit, "Concurrency limit"))
        object.__setattr__(self, "key", key_source(key, "Concurrency key"))
        if scope not in ("function", "app"):
            raise ValueError(f"Concurrency scope must be 'function' or 'app', not {scope!r}")
        object.__setattr__(self, "scope", scope)


@dataclass(frozen=True, init=False)
class Throttle:
    """At most `limit` run starts per `period`, per key; excess runs wait, queued.

    Starts are spaced `period / limit` apart; `burst` of them may start at once.
    """

    limit: int
    period: timedelta
    key: str | None
    burst: int

    def __init__(
        self, limit: int, period: Duration, key: str | None = None, burst: int = 1
    ) -> None:
        object.__setattr__(self, "limit", positive(limit, "Throttle limit"))
        object.__setattr__(self, "period", duration_of(period, "Throttle period"))
        object.__setattr__(self, "key", key_source(key, "Throttle key"))
        object.__setattr__(self, "burst", positive(burst, "Throttle burst"))


@dataclass(frozen=True, init=False)
class RateLimit:
    """At most `limit` runs per `period` (any window of that length), per key; the
    events beyond it start no run (they are listed as skipped, `rate_limited`)."""

    limit: int
    period: timedelta
    key: str | None

    def __init__(self, limit: int, period: Duration, key: str | None = None) -> None:
        object.__setattr__(self, "limit", positive(limit, "RateLimit limit"))
        object.__setattr__(self, "period", duration_of(period, "RateLimit period"))
        object.__setattr__(self, "key", key_source(key, "RateLimit key"))


@dataclass(frozen=True)
class Priority:
    """`run`: a CEL expression over `event` giving seconds of advance (-600 to 600,
    clamped) in the function's queue: a run waiting for a concurrency slot goes before
    runs queued up to that many seconds before it."""

    run: str

    def __post_init__(self) -> None:
        if not isinstance(self.run, str) or not self.run.strip():
            raise ValueError(f"Priority run must be a CEL expression over event, not {self.run!r}")


def concurrency_limits(value: object, function_id: str) -> tuple[Concurrency, ...]:
    """The limits `concurrency=` names (an int, a Concurrency or a list of them): an int
    is one limit without a key."""
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        return (Concurrency(value),)
    items: list[object] = list(value) if isinstance(value, list | tuple) else [value]
    if not items or len(items) > MAX_CONCURRENCY_LIMITS:
        raise ValueError(
            f"function {function_id!r}: concurrency takes 1 to {MAX_CONCURRENCY_LIMITS} limits,"
            f" not {len(items)}"
        )
    limits: list[Concurrency] = []
    for item in items:
        if not isinstance(item, Concurrency):
            raise TypeError(
                f"function {function_id!r}: concurrency must be an int or reverb.Concurrency,"
                f" not {item!r}"
            )
        limits.append(item)
    return tuple(limits)


def option(value: object, kind: type[OptionT], name: str, function_id: str) -> OptionT | None:
    """`value` if it is None or a `kind`; TypeError naming the function otherwise."""
    if value is None or isinstance(value, kind):
        return value
    raise TypeError(
        f"function {function_id!r}: {name} must be reverb.{kind.__name__}, not {value!r}"
    )
