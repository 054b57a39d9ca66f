"""How events become runs: debounce, idempotency, singleton and batch (`@app.function`'s
`debounce=`, `idempotency=`, `singleton=`, `batch=`), checked when declared.

Keys are CEL expressions over `event` (e.g. `"event.data.customer_id"`), as the other
flow-control options' (`reverb._flow`): the SDK checks their type, the engine compiles
them when the app registers. A key of None means one key for the whole function.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, get_args

from reverb._durations import Duration
from reverb._flow import duration_of, key_source, positive

SingletonMode = Literal["skip", "cancel"]

# Longest debounce period or timeout, and batch timeout (Inngest caps debounce at 7 days).
MAX_WAIT = timedelta(days=7)
MAX_BATCH_SIZE = 1000


@dataclass(frozen=True, init=False)
class Debounce:
    """Start one run with the last event of a quiet `period` (per key).

    Each event of the key starts the period again; `timeout` (None: no cap) caps the
    total wait from the first event. The events it supersedes are skipped (`debounced`).
    """

    period: timedelta
    key: str | None
    timeout: timedelta | None

    def __init__(
        self, period: Duration, key: str | None = None, timeout: Duration | None = None
    ) -> None:
        object.__setattr__(self, "period", _wait(period, "Debounce period"))
        object.__setattr__(self, "key", key_source(key, "Debounce key"))
        object.__setattr__(
            self, "timeout", None if timeout is None else _wait(timeout, "Debounce timeout")
        )


@dataclass(frozen=True)
class Singleton:
    """At most one run at a time per key: `skip` a new one while one is in progress, or
    `cancel` the one in progress and start the new one once it has stopped."""

    key: str | None = None
    mode: SingletonMode = "skip"

    def __post_init__(self) -> None:
        key_source(self.key, "Singleton key")
        if self.mode not in get_args(SingletonMode):
            raise ValueError(f"Singleton mode must be 'skip' or 'cancel', not {self.mode!r}")


@dataclass(frozen=True, init=False)
class Batch:
    """Start one run for up to `max_size` events, or for what arrived within `timeout` of
    the first (per key); the run's `ctx.events` holds them all, oldest first."""

    max_size: int
    timeout: timedelta
    key: str | None

    def __init__(self, max_size: int, timeout: Duration, key: str | None = None) -> None:
        size = positive(max_size, "Batch max_size")
        if size > MAX_BATCH_SIZE:
            raise ValueError(f"Batch max_size must be between 1 and {MAX_BATCH_SIZE}, not {size}")
        object.__setattr__(self, "max_size", size)
        object.__setattr__(self, "timeout", _wait(timeout, "Batch timeout"))
        object.__setattr__(self, "key", key_source(key, "Batch key"))


def idempotency_key(value: object, function_id: str) -> str | None:
    """`idempotency=`: a CEL key, or None."""
    return key_source(value, f"function {function_id!r}: idempotency")


def _wait(value: Duration, what: str) -> timedelta:
    duration = duration_of(value, what)
    if duration > MAX_WAIT:
        raise ValueError(f"{what} must be at most 7 days, not {value!r}")
    return duration
