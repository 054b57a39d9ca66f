"""Host leases: a registered host address lasts until its lease ends unless its host renews it.

    register_app (registry)   stores the app's definitions and upserts the host's lease
    renew_lease               extends the lease; never touches the app's definitions
    release_lease             deletes the lease at once (the host is stopping cleanly)

The time a lease ends is PostgreSQL's (`now()` + its duration), so hosts, gateways
and workers never compare their own clocks. A lease names the host process that
holds it (`instance_id`): a renewal from another process at the same address takes
the lease over, and a release only deletes the caller's own lease. Expired leases
are ignored by every reader (`reverb_store.execution.live_hosts`) and deleted when
a host of the app registers.
"""

from dataclasses import dataclass
from datetime import timedelta

import asyncpg


@dataclass(frozen=True, slots=True)
class HostLease:
    """A host's claim to serve an app at `address` for `duration` from now."""

    address: str
    duration: timedelta
    # The host process holding the lease (a random id it chose at start; may be empty).
    instance_id: str = ""


_UPSERT_LEASE = """
INSERT INTO reverb.app_hosts (app_id, address, instance_id, expires_at)
VALUES ($1, $2, $3, now() + $4::interval)
ON CONFLICT (app_id, address) DO UPDATE
    SET instance_id = excluded.instance_id, expires_at = excluded.expires_at,
        registered_at = now()
"""


async def upsert_lease(connection: asyncpg.Connection, app_id: str, lease: HostLease) -> None:
    """Store `lease` for `app_id` (the app's row must exist), and delete the app's other
    leases that have ended."""
    await connection.execute(
        "DELETE FROM reverb.app_hosts WHERE app_id = $1 AND address <> $2 AND expires_at <= now()",
        app_id,
        lease.address,
    )
    await connection.execute(
        _UPSERT_LEASE, app_id, lease.address, lease.instance_id, lease.duration
    )


async def renew_lease(connection: asyncpg.Connection, app_id: str, lease: HostLease) -> bool:
    """Extend (or take again) the lease of `lease.address`; False if the app is not registered.

    One statement; the app's definitions, functions and triggers are not touched.
    """
    try:
        await connection.execute(
            _UPSERT_LEASE, app_id, lease.address, lease.instance_id, lease.duration
        )
    except asyncpg.ForeignKeyViolationError:
        return False
    return True


async def release_lease(
    connection: asyncpg.Connection, app_id: str, address: str, instance_id: str
) -> bool:
    """Delete the lease `instance_id` holds on `address`; False if it holds none there."""
    released = await connection.fetchval(
        "DELETE FROM reverb.app_hosts WHERE app_id = $1 AND address = $2 AND instance_id = $3"
        " RETURNING true",
        app_id,
        address,
        instance_id,
    )
    return bool(released)
