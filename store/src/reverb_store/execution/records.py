"""The values the run driver reads from and writes to the store: plain dataclasses."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import orjson

from reverb.engine_errors import UNTYPED
from reverb_store.ids import AppId, EventId, FunctionId, RunId, StepId

# The values of `runs.status` and `steps.status`/`steps.kind` (migration 0001's CHECKs).
RunStatus = Literal[
    "queued", "running", "sleeping", "waiting", "paused", "completed", "failed", "cancelled"
]
# Why the job driving a run must stop at this step boundary: the run was cancelled, or
# its function paused (`cancellation`, `pausing`).
StopReason = Literal["cancelled", "paused"]
StepStatus = Literal["completed", "failed", "retrying", "sleeping", "waiting"]
StepKind = Literal["run", "sleep", "invoke", "send_event", "wait_for_event"]


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """An error as stored in `runs.error` and `steps.error` (jsonb {type, message, stack})."""

    type: str
    message: str
    stack: str = ""

    def to_json(self) -> str:
        body = {"type": self.type, "message": self.message, "stack": self.stack}
        return orjson.dumps(body).decode()

    @classmethod
    def from_json(cls, text: str) -> "ErrorRecord":
        body = orjson.loads(text)
        if not isinstance(body, dict):
            return cls(UNTYPED.name, str(body))
        return cls(
            str(body.get("type") or UNTYPED.name),
            str(body.get("message") or ""),
            str(body.get("stack") or ""),
        )


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A stored event, as a run receives it."""

    id: EventId
    name: str
    # JSON text of an object.
    data: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class MemoEntry:
    """A step of the memo: its output (JSON text) or its error, or `pending` while it still
    waits (so the host neither runs nor reports it again)."""

    step_id: StepId
    output: str | None
    error: ErrorRecord | None
    pending: bool = False


@dataclass(frozen=True, slots=True)
class ResolvedWait:
    """A wait a claim resolved: a sleep that ended, an invoke whose timeout passed."""

    step_id: StepId
    name: str
    kind: StepKind
    started_at: datetime | None
    # Set when the wait failed (an invoke's timeout).
    error: ErrorRecord | None


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run this job now drives, with everything its invocation starts from."""

    run_id: RunId
    function_id: FunctionId
    app_id: AppId
    # 0-based attempt of the function.
    attempt: int
    max_attempts: int
    invocations: int
    traceparent: str | None
    events: tuple[EventRecord, ...]
    memo: tuple[MemoEntry, ...]
    # The highest `attempts` among steps being retried by this invocation, if any.
    retrying_step_attempts: int | None
    # False when the run's function is no longer registered (a redeploy removed it):
    # the driver fails the run with FunctionRemoved instead of invoking a host.
    registered: bool = True
    # The failures so far of each step this invocation runs again (labels its spans).
    step_attempts: Mapping[StepId, int] = field(default_factory=dict)
    # The waits the claim resolved (each gets a span of its real duration).
    resolved_waits: tuple[ResolvedWait, ...] = ()
    # True when the run's function is paused: the driver parks the run (`pausing.park_run`)
    # instead of invoking a host.
    paused: bool = False
    # True when run gates decide on the run (`runs.gated`): its completion tells them.
    gated: bool = False
    # True for a replay forked from a step (`runs.replay_from_step`): its first
    # invocation resumes from the steps copied before it.
    forked: bool = False

    @property
    def start_attempt(self) -> int:
        """What Start.attempt says: the step's failures so far when retrying one, else the run's."""
        if self.retrying_step_attempts is not None:
            return self.retrying_step_attempts
        return self.attempt


@dataclass(frozen=True, slots=True)
class StepTiming:
    """Which step a report is about, and when the host says it ran."""

    step_id: StepId
    name: str
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class StepState:
    """A step row as committed: what the worker acknowledges."""

    status: StepStatus
    output: str | None = None
    error: ErrorRecord | None = None


@dataclass(frozen=True, slots=True)
class StepOutput:
    """A `step.run` result waiting to be checkpointed."""

    run_id: RunId
    timing: StepTiming
    # JSON text.
    output: str


@dataclass(frozen=True, slots=True)
class OutputCommit:
    """The outcome of checkpointing one StepOutput."""

    state: StepState
    # False when another invocation had already committed the step.
    ours: bool
    # Set when the run must stop at this boundary: the step is committed, but no further
    # step may start (the job lets the run go instead of acknowledging it).
    stop: StopReason | None = None
