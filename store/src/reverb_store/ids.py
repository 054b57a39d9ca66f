"""Identifiers: one type per kind of id, and time-ordered new ones (UUIDv7, RFC 9562).

The types are `NewType`s over what is stored (text, or bigint for pgqueuer's jobs), so a
run id cannot be passed where a step id is meant; sorting UUIDv7s sorts by creation time.
"""

import os
import time
import uuid
from typing import NewType

# A run (UUIDv7).
RunId = NewType("RunId", str)
# An event: the sender's id, or a UUIDv7.
EventId = NewType("EventId", str)
# A function, as registered by its app ("shop/handle-sign-up" or any text the app chose).
FunctionId = NewType("FunctionId", str)
# An app (the unit a function host registers).
AppId = NewType("AppId", str)
# A step of a run, with its occurrence suffix ("send", "send:1").
StepId = NewType("StepId", str)
# A pgqueuer job.
JobId = NewType("JobId", int)


def new_id() -> str:
    """A new UUIDv7 as a string: 48 bits of Unix milliseconds, then random bits."""
    milliseconds = time.time_ns() // 1_000_000
    value = (milliseconds & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))
