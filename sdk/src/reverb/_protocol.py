"""One invocation's conversation with the engine, as plain data (no wire format).

A host turns its wire messages into `Invocation` and `Ack`, runs an `Execution`, and
sends back what it yields: `StepReport`s, then one final message (`RunCompleted`,
`RunFailed` or `Suspended`), with `LogLine`s (`ctx.logger`) among the reports. JSON
payloads stay UTF-8 bytes.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from reverb._event import Event


class ProtocolError(Exception):
    """The engine's side broke the protocol, e.g. an ack for a step nobody reported."""


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    stack: str = ""


@dataclass(frozen=True)
class MemoizedStep:
    """A committed step: its JSON output (None means null), the error it failed with, or
    `pending`: it waits (a sleep or a retry not yet due, an unfinished invoke) and must be
    neither run nor reported again in this invocation."""

    step_id: str
    output: bytes | None = None
    error: ErrorInfo | None = None
    pending: bool = False


@dataclass(frozen=True)
class Invocation:
    run_id: str
    function_id: str
    events: tuple[Event, ...]
    memo: tuple[MemoizedStep, ...] = ()
    attempt: int = 0
    # The steps this invocation runs again after failing, with their failures so far: the
    # code before them already ran (its log lines are not sent again).
    step_attempts: Mapping[str, int] = field(default_factory=dict)
    # Whether the function's ctx.logger lines are sent (False: the engine keeps none, and
    # ctx.logger records nothing).
    log_lines: bool = True


@dataclass(frozen=True)
class StepOutput:
    """step.run returned this JSON value."""

    output: bytes


@dataclass(frozen=True)
class StepFailure:
    """step.run raised."""

    error: ErrorInfo
    retriable: bool
    retry_after: timedelta | None = None
    # RetryAfterError(pause_key=True): hold the run's concurrency keys until retry_after.
    pause_key: bool = False


@dataclass(frozen=True)
class Sleep:
    wake_at: datetime


@dataclass(frozen=True)
class InvokeFunction:
    function_id: str
    data: bytes
    timeout: timedelta | None = None


@dataclass(frozen=True)
class EventInput:
    name: str
    data: bytes
    id: str | None = None
    ts: datetime | None = None


@dataclass(frozen=True)
class SendEvents:
    events: tuple[EventInput, ...]


@dataclass(frozen=True)
class WaitCondition:
    """An event a wait accepts: its name, the data path it must share with the run's
    event (`"data.order_id"`), and a CEL condition over `event` and `async`."""

    event: str
    match: str | None = None
    condition: str | None = None


@dataclass(frozen=True)
class WaitForEvent:
    """step.wait_for_event (one condition) or wait_for_any (several): resolved with the
    first event that meets a condition (the step's output is `{"index", "event"}`), or
    with `null` once `timeout` passed."""

    conditions: tuple[WaitCondition, ...]
    timeout: timedelta
    lookback: timedelta | None = None


StepOperation = StepOutput | StepFailure | Sleep | InvokeFunction | SendEvents | WaitForEvent


@dataclass(frozen=True)
class StepReport:
    """A step reached a point the engine must make durable; an `Ack` answers it."""

    step_id: str
    name: str
    started_at: datetime
    ended_at: datetime
    operation: StepOperation


class AckResult(Enum):
    CONTINUE = "continue"
    PENDING = "pending"
    FAILED = "failed"
    RETRY_LATER = "retry_later"


@dataclass(frozen=True)
class Ack:
    step_id: str
    result: AckResult
    output: bytes | None = None
    error: ErrorInfo | None = None


@dataclass(frozen=True)
class RunCompleted:
    output: bytes


@dataclass(frozen=True)
class RunFailed:
    error: ErrorInfo
    retriable: bool
    retry_after: timedelta | None = None
    pause_key: bool = False


@dataclass(frozen=True)
class Suspended:
    """Nothing can progress until a wait resolves; every report has been acknowledged."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line the function logged (`ctx.logger`): not acknowledged, not final. `step_id`:
    the step whose code logged it (None: the function's own code); `fields`: a JSON
    object, or None."""

    level: Literal["debug", "info", "warning", "error"]
    message: str
    at: datetime
    step_id: str | None = None
    fields: bytes | None = None


FinalMessage = RunCompleted | RunFailed | Suspended
Message = StepReport | LogLine | FinalMessage
