"""What the worker's frames on a Session say, as plain data (the wire package decodes them)."""

from dataclasses import dataclass

from reverb.execution import Ack, Invocation


@dataclass(frozen=True, slots=True)
class Begin:
    """A Start frame: the invocation to run, and the W3C traceparent of its parent span."""

    invocation: Invocation
    traceparent: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """The worker abandons the invocation."""


class BadFrame(ValueError):
    """A frame the worker sent does not fit the protocol."""


WorkerMessage = Begin | Ack | Cancel | BadFrame
"""What one worker frame says about its invocation (BadFrame when it makes no sense)."""
