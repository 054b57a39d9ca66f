"""Where an app's function hosts listen: the addresses whose lease has not ended."""

from dataclasses import dataclass

import asyncpg

from reverb_store.ids import AppId


@dataclass(frozen=True, slots=True)
class LiveHost:
    address: str
    # Seconds left of its lease when it was read (by PostgreSQL's clock, which set it).
    remaining_seconds: float


async def live_hosts(
    connection: asyncpg.Connection | asyncpg.Pool, app_id: AppId
) -> list[LiveHost]:
    """The hosts of `app_id` holding a lease that has not ended, by address."""
    rows = await connection.fetch(
        "SELECT address, extract(epoch FROM expires_at - now())::float8 AS remaining"
        " FROM reverb.app_hosts WHERE app_id = $1 AND expires_at > now() ORDER BY address",
        app_id,
    )
    return [LiveHost(row["address"], row["remaining"]) for row in rows]
