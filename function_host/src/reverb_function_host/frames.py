"""What the worker's frames on a Session say, as plain data (the wire package decodes them)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from reverb.execution import Ack, Invocation, Message
from reverb.signing import AnswerMacs, SigningKey


@dataclass(slots=True)
class Seal:
    """How one invocation's answers are signed: with the key that verified its Start, bound
    to its nonce and to each frame's place (`sequence`, 0-based, taken as frames are made)."""

    key: SigningKey
    nonce: bytes
    sent: int = field(default=0)
    # The MACs of the invocation's answers (the nonce absorbed once).
    macs: AnswerMacs = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.macs = self.key.answers(self.nonce)

    def take(self) -> int:
        """The next frame's sequence number."""
        sequence = self.sent
        self.sent += 1
        return sequence


class Answer(NamedTuple):
    """One frame for the worker: its invocation, its message and how it is signed."""

    invocation_id: int
    message: Message
    # None: the invocation's Start was not signed (an insecure host).
    seal: Seal | None
    sequence: int


@dataclass(frozen=True, slots=True)
class Begin:
    """A Start frame: the invocation to run, the W3C traceparent of its parent span, and
    how its answers are signed (None on an insecure host); `step_attempts`: the earlier
    failures of each step it runs again (for its spans)."""

    invocation: Invocation
    traceparent: str
    seal: Seal | None = None
    step_attempts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refused:
    """A Start that failed its signature check: nothing of it runs; the invocation ends
    with an `Unauthenticated` failure, signed with `seal` when there is one."""

    problem: str
    seal: Seal | None


@dataclass(frozen=True, slots=True)
class Cancel:
    """The worker abandons the invocation."""


class BadFrame(ValueError):
    """A frame the worker sent does not fit the protocol (`seal`: how to sign the failure
    that answers it, when its Start was authentic)."""

    def __init__(self, problem: str, seal: Seal | None = None) -> None:
        super().__init__(problem)
        self.seal = seal


WorkerMessage = Begin | Ack | Cancel | Refused | BadFrame
"""What one worker frame says about its invocation (BadFrame when it makes no sense)."""
