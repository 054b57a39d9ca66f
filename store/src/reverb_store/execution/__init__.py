"""The queries that drive runs: fan-out, claims, step checkpoints, invokes, finals."""

from reverb_store.execution.fanout import Driver, TriggeredRun, create_runs, prepare_fan_out
from reverb_store.execution.hosts import host_addresses
from reverb_store.execution.invokes import INVOKED_EVENT, resume_parent, start_child
from reverb_store.execution.records import (
    ClaimedRun,
    ErrorRecord,
    EventRecord,
    MemoEntry,
    OutputCommit,
    StepOutput,
    StepState,
    StepStatus,
    StepTiming,
)
from reverb_store.execution.runs import (
    SuspendOutcome,
    claim_run,
    complete_run,
    fail_run,
    prepare_claim,
    release_run,
    retry_run,
    suspend_run,
)
from reverb_store.execution.sends import send_events
from reverb_store.execution.steps import (
    commit_outputs,
    load_memo,
    record_failure,
    record_sleep,
    resolve_due,
    step_state,
)

__all__ = [
    "INVOKED_EVENT",
    "ClaimedRun",
    "Driver",
    "ErrorRecord",
    "EventRecord",
    "MemoEntry",
    "OutputCommit",
    "StepOutput",
    "StepState",
    "StepStatus",
    "StepTiming",
    "SuspendOutcome",
    "TriggeredRun",
    "claim_run",
    "commit_outputs",
    "complete_run",
    "create_runs",
    "fail_run",
    "host_addresses",
    "load_memo",
    "prepare_claim",
    "prepare_fan_out",
    "record_failure",
    "record_sleep",
    "release_run",
    "resolve_due",
    "resume_parent",
    "retry_run",
    "send_events",
    "start_child",
    "step_state",
    "suspend_run",
]
