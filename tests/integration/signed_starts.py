"""Signing Start messages as a queue worker does, for tests that play the worker."""

import time

from reverb.signing import Keyring, new_nonce
from reverb_contracts.v1 import function_host_pb2 as pb
from reverb_queue_worker.hosts.wire import start_signed_bytes


def sign_start(
    start: pb.Start,
    key: str,
    app_id: str,
    host_address: str,
    *,
    nonce: bytes | None = None,
    signed_at_ms: int | None = None,
) -> pb.Start:
    """`start` with its `auth` set (in place), signed with `key` for the host of `app_id`
    at `host_address`."""
    signing_key = Keyring(key).current
    auth = start.auth
    auth.key_id = signing_key.id
    auth.signed_at_ms = time.time_ns() // 1_000_000 if signed_at_ms is None else signed_at_ms
    auth.nonce = new_nonce() if nonce is None else nonce
    auth.app_id = app_id
    auth.host_address = host_address
    auth.mac = signing_key.mac(start_signed_bytes(start))
    return start
