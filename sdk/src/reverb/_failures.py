"""The one converter from exceptions to what the engine stores about a failure."""

import asyncio
import concurrent.futures
import os
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reverb._errors import RetryAfterError, ReverbError
from reverb._protocol import ErrorInfo, RunFailed, StepFailure


def error_info(error: BaseException) -> ErrorInfo:
    """The exception's type name, message and formatted stack trace."""
    return ErrorInfo(type(error).__name__, str(error), _stack(error))


def step_failure(error: Exception) -> StepFailure:
    """What a step.run that raised `error` reports."""
    return StepFailure(error_info(error), _retriable(error), _retry_after(error), _pauses(error))


def run_failure(error: Exception) -> RunFailed:
    """What a function that raised `error` reports."""
    return RunFailed(error_info(error), _retriable(error), _retry_after(error), _pauses(error))


def _retriable(error: Exception) -> bool:
    return error.retriable if isinstance(error, ReverbError) else True


def _pauses(error: Exception) -> bool:
    return isinstance(error, RetryAfterError) and error.pause_key


def _retry_after(error: Exception) -> timedelta | None:
    if not isinstance(error, RetryAfterError):
        return None
    if isinstance(error.delay, timedelta):
        return error.delay
    return max(error.delay - datetime.now(UTC), timedelta(0))


# Frames from these folders are the engine's, not the user's: stacks leave them out.
_ENGINE_FOLDERS = tuple(
    str(Path(path).parent) + os.sep
    for path in (asyncio.__file__, concurrent.futures.__file__, __file__)
    if path is not None
)


def _stack(error: BaseException) -> str:
    summary = traceback.TracebackException.from_exception(error)
    frames = [frame for frame in summary.stack if not frame.filename.startswith(_ENGINE_FOLDERS)]
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format())
