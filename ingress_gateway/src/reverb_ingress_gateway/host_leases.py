"""What a host asks for when it registers or renews (RegisterApp, RenewHostLease,
ReleaseHostLease), checked, and the lease the gateway grants it."""

import re
from datetime import timedelta

from reverb_ingress_gateway.errors import InvalidArgument
from reverb_store.control import HostLease

# The lease of a host that asks for none.
DEFAULT_LEASE = timedelta(seconds=30)
# Shorter leases are refused: renewing one would cost more than it is worth.
MINIMUM_LEASE = timedelta(milliseconds=100)
# "host:port", "[::1]:8290", "dns:///name:port": printable, no whitespace.
_ADDRESS = re.compile(r"[^\s\x00-\x1f\x7f]{1,512}")
_INSTANCE = re.compile(r"[^\s\x00-\x1f\x7f]{0,128}")
_APP_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")


def check_host_address(address: str) -> str:
    if not address:
        raise InvalidArgument("host_address is required")
    if not _ADDRESS.fullmatch(address):
        raise InvalidArgument("host_address must be 1-512 characters without spaces")
    return address


def check_app_id(app_id: str) -> str:
    if not _APP_ID.fullmatch(app_id):
        raise InvalidArgument("app_id must be 1-128 characters without spaces")
    return app_id


def check_instance_id(instance_id: str) -> str:
    if not _INSTANCE.fullmatch(instance_id):
        raise InvalidArgument("instance_id must be at most 128 characters without spaces")
    return instance_id


def grant(
    address: str, requested: timedelta | None, instance_id: str, *, maximum: timedelta
) -> HostLease:
    """The lease granted for `requested` (None: the default), at most `maximum`."""
    check_host_address(address)
    check_instance_id(instance_id)
    if requested is None:
        requested = DEFAULT_LEASE
    elif requested < MINIMUM_LEASE:
        raise InvalidArgument(
            f"lease must be at least {MINIMUM_LEASE.total_seconds():g} s"
            f" (got {requested.total_seconds():g} s)"
        )
    return HostLease(address, min(requested, maximum), instance_id)
