"""Signed invocations: the keys, the canonical bytes and the replay guard that queue workers
and function hosts share (engine-internal, like `reverb.execution`).

Every `Start` a worker sends carries a MAC (HMAC-SHA256 with the signing key) over its
canonical bytes; every frame a host answers with carries a MAC bound to that Start's
nonce and to the frame's place in the invocation. `docs/architecture.md` ("Signed
invocations") gives the exact byte layout, so that a host in any language can verify and
sign from the generated stubs. The wire modules build the canonical bytes from the
protobuf messages with `Canonical`; this module knows no protobuf.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANSWER_DOMAIN",
    "Canonical",
    "Keyring",
    "MAX_AGE_MS",
    "NONCE_BYTES",
    "ReplayGuard",
    "START_DOMAIN",
    "SigningKey",
    "Time",
    "answer_base",
    "answer_prefix",
    "completed_answer",
    "empty_answer",
    "failed_answer",
    "failure_operation",
    "invoke_operation",
    "log_answer",
    "no_operation",
    "output_operation",
    "send_events_operation",
    "sleep_operation",
    "step_answer",
    "suspended_answer",
    "wait_for_event_operation",
    "key_id",
    "new_nonce",
]

START_DOMAIN = b"reverb-start-v1"
ANSWER_DOMAIN = b"reverb-answer-v1"
# A Start signed longer ago (or further ahead) than this is refused as stale.
MAX_AGE_MS = 5 * 60 * 1000
NONCE_BYTES = 16

_LENGTH = struct.Struct(">I")
_INTEGER = struct.Struct(">q")
_TIME = struct.Struct(">qi")
_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


def key_id(secret: bytes) -> str:
    """The public name of a key: 16 hex digits of SHA-256("reverb-key-id" NUL key)."""
    return hashlib.sha256(b"reverb-key-id\x00" + secret).hexdigest()[:16]


def new_nonce() -> bytes:
    """A fresh random invocation nonce: each one is accepted once."""
    return secrets.token_bytes(NONCE_BYTES)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One shared secret and its id (the id travels; the secret never does)."""

    secret: bytes = field(repr=False)
    id: str = field(init=False)
    # HMAC's inner and outer hash states after the padded key (RFC 2104), made once: a
    # MAC then costs two hash copies instead of a new HMAC context (half the time).
    _inner: Any = field(init=False, repr=False, compare=False)
    _outer: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", key_id(self.secret))
        padded = self.secret
        if len(padded) > _BLOCK:
            padded = hashlib.sha256(padded).digest()
        padded = padded.ljust(_BLOCK, b"\0")
        object.__setattr__(self, "_inner", hashlib.sha256(padded.translate(_IPAD)))
        object.__setattr__(self, "_outer", hashlib.sha256(padded.translate(_OPAD)))

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256(secret, message)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest

    def verifies(self, message: bytes, mac: bytes) -> bool:
        """Whether `mac` is this key's MAC of `message` (a constant-time compare)."""
        return hmac.compare_digest(self.mac(message), mac)

    def answer_mac(self, base: bytes, sequence: int, content: bytes) -> bytes:
        """The MAC of an answer: `answer_base(nonce)`, the sequence, then the content (the
        same as `mac(answer_prefix(nonce, sequence) + content)`, without copying them)."""
        inner = self._inner.copy()
        inner.update(base)
        inner.update(_INTEGER.pack(sequence))
        inner.update(content)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest


class Keyring:
    """The current key, which signs, and the previous ones, which still verify (a rotation's
    grace period). A message names its key by id."""

    def __init__(self, current: str | bytes, previous: Iterable[str | bytes] = ()) -> None:
        self.current = SigningKey(_secret(current))
        self._keys = {self.current.id: self.current}
        for secret in previous:
            key = SigningKey(_secret(secret))
            self._keys.setdefault(key.id, key)

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every key that verifies, the current one first."""
        return tuple(self._keys.values())

    def get(self, key_id: str) -> SigningKey | None:
        return self._keys.get(key_id)


def _secret(value: str | bytes) -> bytes:
    secret = value.encode() if isinstance(value, str) else value
    if not secret:
        raise ValueError("a signing key must not be empty")
    return secret


class Canonical:
    """Canonical bytes, field by field: a domain tag, then text and bytes as a big-endian
    uint32 length and the bytes (text in UTF-8), integers as big-endian int64, times as
    int64 seconds and int32 nanos, digests as their 32 raw bytes."""

    __slots__ = ("_parts",)

    def __init__(self, domain: bytes) -> None:
        self._parts = [domain]

    def text(self, value: str) -> Canonical:
        encoded = value.encode()
        self._parts.append(_LENGTH.pack(len(encoded)))
        self._parts.append(encoded)
        return self

    def blob(self, value: bytes) -> Canonical:
        self._parts.append(_LENGTH.pack(len(value)))
        self._parts.append(value)
        return self

    def integer(self, value: int) -> Canonical:
        self._parts.append(_INTEGER.pack(value))
        return self

    def time(self, seconds: int, nanos: int) -> Canonical:
        self._parts.append(_TIME.pack(seconds, nanos))
        return self

    def raw(self, value: bytes) -> Canonical:
        self._parts.append(value)
        return self

    def to_bytes(self) -> bytes:
        return b"".join(self._parts)

    def digest(self) -> bytes:
        """SHA-256 of the bytes so far."""
        return hashlib.sha256(self.to_bytes()).digest()


def answer_prefix(nonce: bytes, sequence: int) -> bytes:
    """What an answer's MAC covers before the frame's content: the domain, the Start's
    nonce, and the frame's 0-based place among the invocation's frames."""
    return answer_base(nonce) + _INTEGER.pack(sequence)


def answer_base(nonce: bytes) -> bytes:
    """The part of every answer prefix that is the same for one invocation: made once."""
    return ANSWER_DOMAIN + _LENGTH.pack(len(nonce)) + nonce


# An answer's content (docs/architecture.md, "Signed invocations"), from plain values, in
# one place for both sides: the host encodes what it sends from its own values, the worker
# what it received from the message's fields, and the MACs agree when the values do. These
# build tuples of bytes joined once: `Canonical`'s method per field costs several times
# more on the step-commit path, where every answer is encoded twice (host and worker).

# A time as (seconds, nanos), e.g. a protobuf Timestamp's or Duration's fields.
Time = tuple[int, int]

_pack_length = _LENGTH.pack
_pack_integer = _INTEGER.pack
_pack_present_time = struct.Struct(">qqi").pack
_ABSENT = _INTEGER.pack(0)
_PAUSE_KEY = _INTEGER.pack(1)


def _text(value: str) -> bytes:
    encoded = value.encode()
    return _pack_length(len(encoded)) + encoded


def _blob(value: bytes) -> bytes:
    return _pack_length(len(value)) + value


def _optional_time(value: Time | None) -> bytes:
    return _ABSENT if value is None else _pack_present_time(1, value[0], value[1])


def _error(type_: str, message: str, stack: str) -> bytes:
    return _text(type_) + _text(message) + _text(stack)


_STEP = _text("step")
_OUTPUT = _text("output")


def step_answer(
    step_id: str, name: str, started_at: Time | None, ended_at: Time | None, operation: bytes
) -> bytes:
    """A `step` frame: its timing, then its operation's content (one of the `*_operation`)."""
    encoded_id = step_id.encode()
    encoded_name = name.encode()
    return b"".join(
        (
            _STEP,
            _pack_length(len(encoded_id)),
            encoded_id,
            _pack_length(len(encoded_name)),
            encoded_name,
            _optional_time(started_at),
            _optional_time(ended_at),
            operation,
        )
    )


def output_operation(output: bytes) -> bytes:
    return _OUTPUT + _pack_length(len(output)) + output


def failure_operation(
    type_: str,
    message: str,
    stack: str,
    retriable: bool,
    retry_after: Time | None,
    pause_key: bool = False,
) -> bytes:
    """A step's failure; `pause_key` (RetryAfterError(pause_key=True)) appends int64 1 when
    set and nothing otherwise, so answers without it keep their earlier bytes."""
    return b"".join(
        (
            _text("failure"),
            _error(type_, message, stack),
            _pack_integer(int(retriable)),
            _optional_time(retry_after),
            _PAUSE_KEY if pause_key else b"",
        )
    )


def sleep_operation(wake_at: Time | None) -> bytes:
    return _text("sleep") + _optional_time(wake_at)


def invoke_operation(function_id: str, data: bytes, timeout: Time | None) -> bytes:
    return _text("invoke") + _text(function_id) + _blob(data) + _optional_time(timeout)


def send_events_operation(events: Sequence[tuple[str, bytes, str, Time | None]]) -> bytes:
    """Events as (name, data, id, ts); an event without an id has ""."""
    parts = [_text("send_events"), _pack_integer(len(events))]
    for name, data, event_id, ts in events:
        parts += (_text(name), _blob(data), _text(event_id), _optional_time(ts))
    return b"".join(parts)


def wait_for_event_operation(
    event: str,
    match: str,
    timeout: Time | None,
    condition: str,
    lookback: Time | None,
    alternatives: Sequence[tuple[str, str, str]],
) -> bytes:
    """The first condition's event, match and timeout, its CEL condition ("" if none), the
    lookback, then the wait_for_any alternatives as (event, match, condition)."""
    parts = [
        _text("wait_for_event"),
        _text(event),
        _text(match),
        _optional_time(timeout),
        _text(condition),
        _optional_time(lookback),
        _pack_integer(len(alternatives)),
    ]
    for other_event, other_match, other_condition in alternatives:
        parts += (_text(other_event), _text(other_match), _text(other_condition))
    return b"".join(parts)


def no_operation() -> bytes:
    """A step frame that names no operation."""
    return _text("")


def completed_answer(output: bytes) -> bytes:
    return _text("completed") + _blob(output)


def failed_answer(
    type_: str,
    message: str,
    stack: str,
    retriable: bool,
    retry_after: Time | None,
    pause_key: bool = False,
) -> bytes:
    """A run's failure; `pause_key` as in `failure_operation`."""
    return b"".join(
        (
            _text("failed"),
            _error(type_, message, stack),
            _pack_integer(int(retriable)),
            _optional_time(retry_after),
            _PAUSE_KEY if pause_key else b"",
        )
    )


def suspended_answer() -> bytes:
    return _text("suspended")


_LOG = _text("log")


def log_answer(level: int, message: str, at: Time | None, step_id: str, fields: bytes) -> bytes:
    """A `log` frame (ctx.logger): the LogLevel's number, the message, the time, the step
    id ("" at function level) and the fields' JSON (b"" for none)."""
    return b"".join(
        (
            _LOG,
            _pack_integer(level),
            _text(message),
            _optional_time(at),
            _text(step_id),
            _blob(fields),
        )
    )


def empty_answer() -> bytes:
    """A frame that carries no message."""
    return _text("")


class ReplayGuard:
    """Remembers the nonces accepted within the last `window_ms`, so that each is accepted
    once. Memory is bounded: past `capacity` nonces the oldest are forgotten, and from then
    on nothing signed at or before the newest time forgotten is accepted (so a forgotten
    nonce can never be accepted again)."""

    def __init__(self, window_ms: int = MAX_AGE_MS, capacity: int = 200_000) -> None:
        self._window_ms = window_ms
        self._capacity = capacity
        # nonce -> signed at (ms), in the order accepted
        self._seen: dict[bytes, int] = {}
        self._floor_ms = -(2**63)

    def problem(self, nonce: bytes, signed_at_ms: int, now_ms: int) -> str | None:
        """Why a Start with `nonce` signed at `signed_at_ms` is refused; None (and the
        nonce is remembered) when it is accepted."""
        if abs(now_ms - signed_at_ms) > self._window_ms:
            return "stale signature (signed_at_ms is outside the accepted window)"
        if len(nonce) != NONCE_BYTES:
            return f"the nonce must be {NONCE_BYTES} bytes"
        self._forget_expired(now_ms)
        if nonce in self._seen:
            return "replayed Start (its nonce was accepted before)"
        if signed_at_ms <= self._floor_ms:
            return "stale signature (older than the replay guard remembers)"
        self._seen[nonce] = signed_at_ms
        if len(self._seen) > self._capacity:
            oldest = next(iter(self._seen))
            self._floor_ms = max(self._floor_ms, self._seen.pop(oldest))
        return None

    def __len__(self) -> int:
        return len(self._seen)

    def _forget_expired(self, now_ms: int) -> None:
        seen, horizon = self._seen, now_ms - self._window_ms
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= horizon:
                return
            del seen[oldest]
