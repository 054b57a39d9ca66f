"""Options that go with a step or a function: `reverb.Step` (a step's id and its timeout)
and `reverb.Timeouts` (a function's)."""

from dataclasses import dataclass
from datetime import timedelta

from reverb._durations import Duration, parse_duration


@dataclass(frozen=True, slots=True)
class Step:
    """A step's id with options, in place of the id: `ctx.step.run(reverb.Step("charge",
    timeout="30s"), charge, order)`. The options never take a keyword argument away from
    the step's function.

    `timeout`: an attempt of the step that runs longer fails with the retriable error
    `StepTimeout` (the step is retried as any failure is, within the function's retries).
    """

    id: str
    timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """A function's time limits: `@app.function(..., timeouts=reverb.Timeouts(start="5m",
    finish="1h"))`. A run that exceeds either fails with `FunctionTimeout`, without retries.

    `start`: from the run's creation (queued) to its first invocation (its first step).
    `finish`: from then to the run's end, sleeps and waits included.
    """

    start: Duration | None = None
    finish: Duration | None = None


def limit(value: Duration | None, what: str) -> timedelta | None:
    """A timeout as a positive timedelta (None when unset); ValueError naming `what`."""
    if value is None:
        return None
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError(f"{what} must be longer than 0, not {value!r}")
    return duration
