"""Time-ordered identifiers (UUIDv7, RFC 9562): sorting by id sorts by creation time."""

import os
import time
import uuid


def new_id() -> str:
    """A new UUIDv7 as a string: 48 bits of Unix milliseconds, then random bits."""
    milliseconds = time.time_ns() // 1_000_000
    value = (milliseconds & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))
