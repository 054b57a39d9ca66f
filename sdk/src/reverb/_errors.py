"""Reverb's exceptions.

The tree:

* ReverbError: the base of every exception the SDK raises on purpose.
    + NonRetriableError: raise it to fail a step (or the run) at once, without retries.
        - OutputUnserializableError: a step or function returned a value that is not JSON.
        - StepArgumentError (also a ValueError): a step was called with an argument it
          cannot take (an empty id, an unknown duration, a naive datetime, ...).
    + RetryAfterError: raise it to retry a step (or the run) no sooner than `delay`.
    + StepError: raised inside the function when a step failed for good.

* Interrupt (a BaseException, engine-internal): abandons the function's coroutine when the
  invocation suspends or ends; user code's `except Exception` cannot swallow it.
"""

from datetime import datetime, timedelta

from reverb._durations import Duration, parse_duration


class ReverbError(Exception):
    """The base of every exception the SDK raises on purpose."""

    retriable: bool = True


class NonRetriableError(ReverbError):
    """Fail the step (or, raised by the function itself, the run) at once, without retries."""

    retriable = False


class OutputUnserializableError(NonRetriableError):
    """A step or a function returned a value that cannot be stored as JSON."""


class StepArgumentError(NonRetriableError, ValueError):
    """A step was called with an argument it cannot take; the message names the step.

    Raised at the step's call site. Unless the function catches it, the run fails at once:
    a retry would call the step the same way.
    """


class RetryAfterError(ReverbError):
    """Retry the step (or the run) no sooner than `delay`: a duration or an aware datetime.

    `pause_key=True` holds back every run of the run's concurrency keys too, until the
    delay has passed: one 429 from a partner API pauses the whole tenant, not one run.
    """

    def __init__(
        self, delay: Duration | datetime, message: str | None = None, *, pause_key: bool = False
    ) -> None:
        self.pause_key = bool(pause_key)
        if isinstance(delay, datetime):
            if delay.tzinfo is None:
                raise ValueError("RetryAfterError needs a timezone-aware datetime")
            self.delay: timedelta | datetime = delay
        else:
            self.delay = parse_duration(delay)
        super().__init__(message or f"retry after {self.delay}")


class StepError(ReverbError):
    """A step failed for good (its retries are spent, or it raised NonRetriableError).

    Raised at the step's call site, so the function may catch it and go on.
    """

    retriable = False

    def __init__(self, step_id: str, error_type: str, message: str, stack: str = "") -> None:
        super().__init__(f"step {step_id!r} failed: {error_type}: {message}")
        self.step_id = step_id
        self.error_type = error_type
        self.message = message
        self.stack = stack


class Interrupt(BaseException):
    """Engine-internal: abandons the function's coroutine. Never catch it."""
