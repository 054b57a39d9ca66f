"""The engine for one invocation, for function hosts (not for workflow authors).

A host in Python turns its wire messages into `Invocation` and `Ack`, drives an
`Execution`, and sends back what it yields: `StepReport`s, then one final message
(`RunCompleted`, `RunFailed` or `Suspended`). Nothing here knows a wire format;
`reverb_function_host` is the gRPC host built on it.
"""

from reverb._execution import Execution
from reverb._protocol import (
    Ack,
    AckResult,
    ErrorInfo,
    EventInput,
    FinalMessage,
    Invocation,
    InvokeFunction,
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
)

__all__ = [
    "Ack",
    "AckResult",
    "ErrorInfo",
    "EventInput",
    "Execution",
    "FinalMessage",
    "Invocation",
    "InvokeFunction",
    "MemoizedStep",
    "Message",
    "ProtocolError",
    "RunCompleted",
    "RunFailed",
    "SendEvents",
    "Sleep",
    "StepFailure",
    "StepOperation",
    "StepOutput",
    "StepReport",
    "Suspended",
]
