"""Where an app's function hosts listen."""

import asyncpg

from reverb_store.ids import AppId


async def host_addresses(connection: asyncpg.Connection | asyncpg.Pool, app_id: AppId) -> list[str]:
    """The addresses registered for `app_id`, newest registration first."""
    rows = await connection.fetch(
        "SELECT address FROM reverb.app_hosts WHERE app_id = $1"
        " ORDER BY registered_at DESC, address",
        app_id,
    )
    return [row["address"] for row in rows]
