"""A host session in domain terms: what the worker sends and what a host reports.

`wire` converts these to and from protobuf; nothing else sees generated types.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from reverb_store import NewEvent, execution
from reverb_store.execution import ErrorRecord, EventRecord, MemoEntry, StepTiming
from reverb_store.ids import AppId, FunctionId, RunId, StepId
from reverb_store.logs import Level

SESSION_METHOD = "/reverb.v1.FunctionHost/Invoke"


@dataclass(frozen=True, slots=True)
class Start:
    run_id: RunId
    function_id: FunctionId
    events: tuple[EventRecord, ...]
    memo: tuple[MemoEntry, ...]
    attempt: int
    traceparent: str | None
    deadline: datetime
    # For each step run again after failing: its failures so far (labels its spans).
    step_attempts: Mapping[StepId, int] = field(default_factory=dict)
    # Whether the host sends the function's ctx.logger lines (False: this worker keeps
    # none, its log sink is off).
    log_lines: bool = True


@dataclass(frozen=True, slots=True)
class Opening:
    """A Start as a session sends it: to which app and host (its registered address), under
    which nonce (signed when written)."""

    start: Start
    app_id: AppId
    host_address: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Cancel:
    """The worker gives up on an invocation: the host abandons it and reports no more."""


@dataclass(frozen=True, slots=True)
class Output:
    """`step.run` returned; JSON text."""

    output: str


@dataclass(frozen=True, slots=True)
class Failure:
    """`step.run` raised."""

    error: ErrorRecord
    retriable: bool
    retry_after: timedelta | None
    # RetryAfterError(pause_key=True): hold the run's concurrency keys until retry_after.
    pause_key: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    wake_at: datetime


@dataclass(frozen=True, slots=True)
class Invoke:
    function_id: FunctionId
    # JSON text of an object: the child's event data.
    data: str
    timeout: timedelta | None


@dataclass(frozen=True, slots=True)
class SendEvents:
    events: tuple[NewEvent, ...]


WaitCondition = execution.WaitCondition


@dataclass(frozen=True, slots=True)
class WaitForEvent:
    """step.wait_for_event (one condition) or wait_for_any (several)."""

    conditions: tuple[WaitCondition, ...]
    timeout: timedelta | None
    lookback: timedelta | None


StepOperation = Output | Failure | Sleep | Invoke | SendEvents | WaitForEvent


@dataclass(frozen=True, slots=True)
class StepReport:
    timing: StepTiming
    operation: StepOperation


@dataclass(frozen=True, slots=True)
class Completed:
    """The function returned; JSON text."""

    output: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The function raised (or the engine gave up on this attempt)."""

    error: ErrorRecord
    retriable: bool
    retry_after: timedelta | None = None
    pause_key: bool = False


@dataclass(frozen=True, slots=True)
class Suspended:
    """Every reported step is acknowledged and the function waits."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line the function logged (`ctx.logger`), as the host sent it: `step_id` None at
    function level; `fields` the JSON text of an object, or None. `wire` bounds it."""

    level: Level
    message: str
    at: datetime | None
    step_id: StepId | None
    fields: str | None


Final = Completed | Failed | Suspended
HostMessage = StepReport | LogLine | Final


class AckResult(enum.Enum):
    CONTINUE = "continue"
    PENDING = "pending"
    FAILED = "failed"
    RETRY_LATER = "retry_later"


@dataclass(frozen=True, slots=True)
class Ack:
    step_id: StepId
    result: AckResult
    # The committed JSON output, when the host must use it instead of its own.
    output: str | None = None
    error: ErrorRecord | None = None


# What the worker sends about one invocation.
WorkerMessage = Opening | Ack | Cancel
