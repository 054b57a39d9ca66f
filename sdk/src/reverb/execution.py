"""The engine for one invocation, for function hosts (not for workflow authors).

A host in Python turns its wire messages into `Invocation` and `Ack`, drives an
`Execution`, and sends back what it yields: `StepReport`s, then one final message
(`RunCompleted`, `RunFailed` or `Suspended`), with a `LogLine` for each `ctx.logger` line
(no ack; bounded by the `LOG_*` limits, which a worker applies again to what any host
sends). Nothing here knows a wire format;
`reverb_function_host` is the gRPC host built on it.

`replay` runs a function over a run's memo without running any step, and `drift`
says whether the code would reach the recorded steps in the same order (what
`reverb check` reports before a deploy).
"""

from reverb._execution import Execution
from reverb._logger import FIELDS_LIMIT as LOG_FIELDS_LIMIT
from reverb._logger import LINES_LIMIT as LOG_LINES_LIMIT
from reverb._logger import MESSAGE_LIMIT as LOG_MESSAGE_LIMIT
from reverb._protocol import (
    Ack,
    AckResult,
    ErrorInfo,
    EventInput,
    FinalMessage,
    Invocation,
    InvokeFunction,
    LogLine,
    MemoizedStep,
    Message,
    ProtocolError,
    RunCompleted,
    RunFailed,
    SendEvents,
    Sleep,
    StepFailure,
    StepOperation,
    StepOutput,
    StepReport,
    Suspended,
    WaitCondition,
    WaitForEvent,
)
from reverb._replay import Replayed, drift, replay

__all__ = [
    "Ack",
    "AckResult",
    "ErrorInfo",
    "EventInput",
    "Execution",
    "FinalMessage",
    "Invocation",
    "InvokeFunction",
    "LOG_FIELDS_LIMIT",
    "LOG_LINES_LIMIT",
    "LOG_MESSAGE_LIMIT",
    "LogLine",
    "MemoizedStep",
    "Message",
    "ProtocolError",
    "Replayed",
    "RunCompleted",
    "RunFailed",
    "SendEvents",
    "Sleep",
    "StepFailure",
    "StepOperation",
    "StepOutput",
    "StepReport",
    "Suspended",
    "WaitCondition",
    "WaitForEvent",
    "drift",
    "replay",
]
