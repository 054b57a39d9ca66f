"""The one converter from exceptions to what the engine stores about a failure."""

import traceback
from datetime import UTC, datetime, timedelta

from reverb._errors import RetryAfterError, ReverbError
from reverb._protocol import ErrorInfo, RunFailed, StepFailure


def error_info(error: BaseException) -> ErrorInfo:
    """The exception's type name, message and formatted stack trace."""
    return ErrorInfo(type(error).__name__, str(error), _stack(error))


def step_failure(error: Exception) -> StepFailure:
    """What a step.run that raised `error` reports."""
    return StepFailure(error_info(error), _retriable(error), _retry_after(error))


def run_failure(error: Exception) -> RunFailed:
    """What a function that raised `error` reports."""
    return RunFailed(error_info(error), _retriable(error), _retry_after(error))


def _retriable(error: Exception) -> bool:
    return error.retriable if isinstance(error, ReverbError) else True


def _retry_after(error: Exception) -> timedelta | None:
    if not isinstance(error, RetryAfterError):
        return None
    if isinstance(error.delay, timedelta):
        return error.delay
    return max(error.delay - datetime.now(UTC), timedelta(0))


def _stack(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))
