"""Signed invocations: the keys, the MACs and the replay guard that queue workers and
function hosts share (engine-internal, like `reverb.execution`).

A worker with a key sends every Start as the bytes it serialized and a MAC over exactly
those bytes (`SignedStart`); a host answers every frame of such an invocation as the bytes
it serialized and a MAC over them bound to that Start's nonce and to the frame's place in
the invocation (`SignedFrame`). Each side verifies before it parses, and nothing is
re-encoded: a host in any language signs what its protobuf library wrote.
`docs/architecture.md` ("Signed invocations") gives the exact layout. This module knows no
protobuf: the wire modules hand it bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANSWER_DOMAIN",
    "AnswerMacs",
    "Keyring",
    "MAX_AGE_MS",
    "NONCE_BYTES",
    "ReplayGuard",
    "START_DOMAIN",
    "SigningKey",
    "answer_base",
    "answer_prefix",
    "key_id",
    "new_nonce",
]

START_DOMAIN = b"reverb-start-v2"
ANSWER_DOMAIN = b"reverb-answer-v2"
# A Start signed longer ago (or further ahead) than this is refused as stale.
MAX_AGE_MS = 5 * 60 * 1000
NONCE_BYTES = 16

_LENGTH = struct.Struct(">I")
_INTEGER = struct.Struct(">q")
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

    def start_mac(self, start: bytes) -> bytes:
        """The MAC of a serialized Start: HMAC(secret, START_DOMAIN || start), without
        joining them."""
        inner = self._inner.copy()
        inner.update(START_DOMAIN)
        inner.update(start)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest

    def answers(self, nonce: bytes) -> AnswerMacs:
        """The MACs of the answers to the Start with `nonce`, made with this key."""
        return AnswerMacs(self, nonce)

    def answer_mac(self, base: bytes, sequence: int, frame: bytes) -> bytes:
        """The MAC of a serialized host frame: `answer_base(nonce)`, the sequence, then the
        frame (the same as `mac(answer_prefix(nonce, sequence) + frame)`, without joining
        them)."""
        inner = self._inner.copy()
        inner.update(base)
        inner.update(_INTEGER.pack(sequence))
        inner.update(frame)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest


class AnswerMacs:
    """The MACs of one invocation's answers under one key: the key's inner hash state
    with `answer_base(nonce)` absorbed once, so a frame's MAC hashes only its sequence and
    its bytes (the same MAC as `key.answer_mac(answer_base(nonce), sequence, frame)`)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: SigningKey, nonce: bytes) -> None:
        inner = key._inner.copy()
        inner.update(answer_base(nonce))
        self._inner = inner
        self._outer = key._outer

    def mac(self, sequence: int, frame: bytes) -> bytes:
        """The MAC of the frame at `sequence` (0-based) whose serialized bytes are `frame`."""
        inner = self._inner.copy()
        inner.update(_INTEGER.pack(sequence))
        inner.update(frame)
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


def answer_prefix(nonce: bytes, sequence: int) -> bytes:
    """What a host frame's MAC covers before the frame's bytes: the domain, the Start's
    nonce, and the frame's 0-based place among the invocation's frames."""
    return answer_base(nonce) + _INTEGER.pack(sequence)


def answer_base(nonce: bytes) -> bytes:
    """The part of every answer prefix that is the same for one invocation: made once."""
    return ANSWER_DOMAIN + _LENGTH.pack(len(nonce)) + nonce


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
