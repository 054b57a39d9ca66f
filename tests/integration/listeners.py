"""A function listening to some event names, as Ingress.RegisterApp would store it."""

import asyncpg


async def listen(connection: asyncpg.Connection, *event_names: str) -> None:
    """Register one function triggered by each of `event_names`, so that accepting an
    event with one of these names enqueues its fan-out job."""
    await connection.execute(
        "INSERT INTO reverb.apps (id, definition_hash, definition) VALUES ('listeners', '', '{}')"
        " ON CONFLICT (id) DO NOTHING"
    )
    await connection.execute(
        "INSERT INTO reverb.functions (id, app_id, name) VALUES ('listener', 'listeners', 'l')"
        " ON CONFLICT (id) DO NOTHING"
    )
    await connection.executemany(
        "INSERT INTO reverb.triggers (function_id, event_name) VALUES ('listener', $1)",
        [(name,) for name in event_names],
    )
