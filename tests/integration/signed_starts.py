"""Signing Start messages as a queue worker does, for tests that play the worker."""

import time
from collections.abc import Callable

from reverb.signing import Keyring, new_nonce
from reverb_contracts.v1 import function_host_pb2 as pb


def sign_start(
    start: pb.Start,
    key: str,
    app_id: str,
    host_address: str,
    *,
    nonce: bytes | None = None,
    signed_at_ms: int | None = None,
) -> pb.SignedStart:
    """`start` (its `auth` set, in place) as a worker sends it: its bytes and their MAC
    with `key`, for the host of `app_id` at `host_address`."""
    signing_key = Keyring(key).current
    auth = start.auth
    auth.signed_at_ms = time.time_ns() // 1_000_000 if signed_at_ms is None else signed_at_ms
    auth.nonce = new_nonce() if nonce is None else nonce
    auth.app_id = app_id
    auth.host_address = host_address
    data = start.SerializeToString()
    return pb.SignedStart(start=data, key_id=signing_key.id, mac=signing_key.start_mac(data))


def altered(signed: pb.SignedStart, change: Callable[[pb.Start], object]) -> pb.SignedStart:
    """`signed` with its Start changed by `change` on the way, its MAC kept."""
    start = pb.Start.FromString(signed.start)
    change(start)
    return pb.SignedStart(start=start.SerializeToString(), key_id=signed.key_id, mac=signed.mac)


def nonce_of(signed: pb.SignedStart) -> bytes:
    return pb.Start.FromString(signed.start).auth.nonce
