"""The error types the engine itself produces: what `GET /runs/{id}` shows as `error.type`.

An error a function raises is named after its exception class (`ValueError`,
`reverb.StepError`, ...). These are the others: failures the engine, the worker
or the function host records on a step's or a run's behalf. Every producer
names them through this catalogue, never as a string of its own.

The catalogue (retriable: whether the attempt may be tried again):

* A step failed, as the function sees it
    - StepError (no): a step failed for good; stored when no error of its own is known.
    - StepFailed (no): the engine acknowledged a step as failed without an error.
    - InvokeTimeout (no): an invoked function did not finish within the invoke's timeout.
    - FunctionNotFound (no): `step.invoke` named a function that is not registered.
    - InvalidPayload (no): a step's data cannot be stored (JSON PostgreSQL refuses).
    - InvalidWait (no): a wait the engine refuses: a condition (`if_`) that is not valid
      CEL, or a match path the run's event lacks (the message names function and step).
    - NotSupported (no): a step kind this worker cannot run yet.
    - OutputTooLarge (no): a JSON value larger than the host may send.
    - OutputUnserializableError (no): a step or a function returned a value that is not JSON.
* An attempt of a step failed
    - StepTimeout (yes): an attempt of a step ran past its `reverb.Step(timeout=...)`.
* An attempt of the function failed
    - InvalidOutput (no): the function's result cannot be stored.
    - InvocationTimeout (yes): the invocation ran past the worker's invocation timeout.
    - HostError (yes): the host could not run the invocation (an unknown function, a
      malformed start, an ack for no step) or its session handler failed.
    - EngineError (yes): the SDK's engine failed inside the host.
    - ProtocolError (no): the host sent what the protocol does not allow.
    - Unauthenticated (yes): a Start or a host's answer failed its signature check (a
      wrong or rotated-out key, a stale or replayed Start, a forged answer); nothing it
      carried was run or stored.
    - StartTooLarge (no): the run's Start message (its events and memo) is larger than
      the host (or the worker) accepts, so no attempt can ever reach the host.
* A run out of time
    - FunctionTimeout (no): the run exceeded its function's `reverb.Timeouts`: it did not
      start within `start` of being queued, or did not end within `finish` of starting.
* A run that never ran, or was stopped
    - RunSkipped (no): a run gate skipped the run (its reason is the message).
    - RunCancelled (no): the run was cancelled (`POST /runs/{id}/cancel`, the bulk form, or
      the cancellation of the run that invoked it); a parent waiting on it sees this error.
* A run whose function is gone
    - FunctionRemoved (no): the run's app was registered again without the run's function
      (a redeploy removed it); the run fails when it is next claimed, never hangs.
* Error (yes): an error stored without a type.
"""

from dataclasses import dataclass

__all__ = [
    "CATALOGUE",
    "ENGINE_ERROR",
    "ErrorType",
    "FUNCTION_NOT_FOUND",
    "FUNCTION_REMOVED",
    "FUNCTION_TIMEOUT",
    "HOST_ERROR",
    "INVALID_OUTPUT",
    "INVALID_PAYLOAD",
    "INVALID_WAIT",
    "INVOCATION_TIMEOUT",
    "INVOKE_TIMEOUT",
    "NOT_SUPPORTED",
    "OUTPUT_TOO_LARGE",
    "OUTPUT_UNSERIALIZABLE",
    "PROTOCOL_ERROR",
    "RUN_CANCELLED",
    "RUN_SKIPPED",
    "START_TOO_LARGE",
    "STEP_ERROR",
    "STEP_FAILED",
    "STEP_TIMEOUT",
    "UNAUTHENTICATED",
    "UNTYPED",
]


@dataclass(frozen=True, slots=True)
class ErrorType:
    """One error type of the engine: its name (as users see it), whether the attempt it
    ends may be retried, and what it means."""

    name: str
    retriable: bool
    meaning: str


STEP_ERROR = ErrorType("StepError", False, "a step failed for good")
STEP_FAILED = ErrorType("StepFailed", False, "the engine acknowledged a step as failed")
INVOKE_TIMEOUT = ErrorType("InvokeTimeout", False, "the invoked function did not finish in time")
FUNCTION_NOT_FOUND = ErrorType("FunctionNotFound", False, "no such function is registered")
INVALID_PAYLOAD = ErrorType("InvalidPayload", False, "the step's data cannot be stored")
INVALID_WAIT = ErrorType("InvalidWait", False, "a wait's condition or match cannot be used")
NOT_SUPPORTED = ErrorType("NotSupported", False, "this worker cannot run the step yet")
OUTPUT_TOO_LARGE = ErrorType("OutputTooLarge", False, "a JSON value too large to send")
OUTPUT_UNSERIALIZABLE = ErrorType(
    "OutputUnserializableError", False, "a step or a function returned a value that is not JSON"
)
INVALID_OUTPUT = ErrorType("InvalidOutput", False, "the function's result cannot be stored")
INVOCATION_TIMEOUT = ErrorType(
    "InvocationTimeout", True, "the invocation ran past the worker's invocation timeout"
)
HOST_ERROR = ErrorType("HostError", True, "the function host could not run the invocation")
ENGINE_ERROR = ErrorType("EngineError", True, "the SDK's engine failed inside the host")
PROTOCOL_ERROR = ErrorType("ProtocolError", False, "the host broke the protocol")
UNAUTHENTICATED = ErrorType(
    "Unauthenticated", True, "a Start or a host's answer failed its signature check"
)
RUN_SKIPPED = ErrorType("RunSkipped", False, "a run gate skipped the run")
RUN_CANCELLED = ErrorType("RunCancelled", False, "the run was cancelled")
START_TOO_LARGE = ErrorType(
    "StartTooLarge", False, "the run's Start message is larger than the host accepts"
)
FUNCTION_REMOVED = ErrorType(
    "FunctionRemoved", False, "the run's function is no longer registered by its app"
)
STEP_TIMEOUT = ErrorType("StepTimeout", True, "an attempt of a step ran past its timeout")
FUNCTION_TIMEOUT = ErrorType(
    "FunctionTimeout", False, "the run did not start or finish within its function's timeouts"
)
UNTYPED = ErrorType("Error", True, "an error stored without a type")

# Every engine error type, by name.
CATALOGUE: dict[str, ErrorType] = {
    entry.name: entry
    for entry in (
        STEP_ERROR,
        STEP_FAILED,
        INVOKE_TIMEOUT,
        FUNCTION_NOT_FOUND,
        INVALID_PAYLOAD,
        INVALID_WAIT,
        NOT_SUPPORTED,
        OUTPUT_TOO_LARGE,
        OUTPUT_UNSERIALIZABLE,
        INVALID_OUTPUT,
        INVOCATION_TIMEOUT,
        HOST_ERROR,
        ENGINE_ERROR,
        PROTOCOL_ERROR,
        UNAUTHENTICATED,
        RUN_SKIPPED,
        RUN_CANCELLED,
        START_TOO_LARGE,
        FUNCTION_REMOVED,
        STEP_TIMEOUT,
        FUNCTION_TIMEOUT,
        UNTYPED,
    )
}
