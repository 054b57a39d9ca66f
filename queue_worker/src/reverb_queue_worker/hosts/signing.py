"""Worker→host request signing (gRPC metadata `x-reverb-signature`)."""

import functools
import hashlib
import hmac
import time

SIGNATURE_HEADER = "x-reverb-signature"


def signature(key: str, method: str, now: float | None = None) -> str:
    """`t=<unix seconds>,s=<hex hmac_sha256(key, "t:method")>` for the full gRPC method path."""
    return _signature_at(key, method, int(time.time() if now is None else now))


@functools.lru_cache(maxsize=16)
def _signature_at(key: str, method: str, timestamp: int) -> str:
    """Computed once per second and method, however many calls the worker makes."""
    digest = hmac.new(key.encode(), f"{timestamp}:{method}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},s={digest}"


def signature_metadata(key: str | None, method: str) -> tuple[tuple[str, str], ...]:
    """The metadata to send with a call to `method`; empty without a key."""
    if not key:
        return ()
    return ((SIGNATURE_HEADER, signature(key, method)),)
