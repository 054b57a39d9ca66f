"""RegisterApp's store side: definitions under a canonical hash, no writes when it is
unchanged, one transaction when it changed, registrations of one app serialized, and the
runs in flight of a removed function woken so that their claim fails them.

Real PostgreSQL; `register_app` is what the gateway's RegisterApp calls."""

import asyncio
import hashlib
from datetime import timedelta

import asyncpg
import orjson

from reverb_store import control, jobs
from reverb_store.control.leases import HostLease
from reverb_store.control.registry import (
    AppDefinition,
    FunctionDefinition,
    TriggerDefinition,
    canonical_json,
    definition_hash,
)

LEASE = HostLease("127.0.0.1:1", timedelta(seconds=30))


def definition(*functions: tuple[str, str], app_id: str = "shop") -> AppDefinition:
    """An app of (function id, event name) pairs."""
    return AppDefinition(
        app_id,
        tuple(
            FunctionDefinition(fid, fid, 3, (TriggerDefinition(event=name),))
            for fid, name in functions
        ),
    )


async def rows(connection: asyncpg.Connection) -> list[tuple[object, ...]]:
    """Every registration row with its xmin (the transaction that last wrote it)."""
    found = await connection.fetch(
        "SELECT 'app', id, xmin::text, registered_at, updated_at FROM reverb.apps"
        " UNION ALL SELECT 'function', id, xmin::text, created_at, updated_at FROM reverb.functions"
        " UNION ALL SELECT 'trigger', function_id, xmin::text, NULL, NULL FROM reverb.triggers"
        " ORDER BY 1, 2"
    )
    return [tuple(row) for row in found]


def test_the_hash_is_canonical_and_stable() -> None:
    one = definition(("a", "x"), ("b", "y"))
    reordered = AppDefinition("shop", tuple(reversed(one.functions)))
    assert definition_hash(one) == definition_hash(reordered)
    # The same bytes on every host and Python version: sorted keys, no whitespace.
    document = (
        b'{"functions":[{"id":"a","name":"a","retries":3,"triggers":[{"event":"x"}]},'
        b'{"id":"b","name":"b","retries":3,"triggers":[{"event":"y"}]}],"id":"shop"}'
    )
    assert canonical_json(one) == document
    assert definition_hash(one) == hashlib.sha256(document).hexdigest()
    assert definition_hash(definition(("a", "x"), ("b", "z"))) != definition_hash(one)


async def test_an_unchanged_definition_writes_nothing(connection: asyncpg.Connection) -> None:
    app = definition(("a", "x"), ("b", "y"))
    assert await control.register_app(connection, app, LEASE) is True
    before = await rows(connection)

    assert await control.register_app(connection, app, LEASE) is False

    assert await rows(connection) == before


async def test_a_changed_definition_is_applied_whole(connection: asyncpg.Connection) -> None:
    await control.register_app(connection, definition(("a", "x"), ("b", "y")), LEASE)
    changed = definition(("a", "x2"), ("c", "z"))

    assert await control.register_app(connection, changed, LEASE) is True

    stored = await connection.fetchrow("SELECT definition_hash FROM reverb.apps WHERE id = 'shop'")
    assert stored is not None and stored["definition_hash"] == definition_hash(changed)
    triggers = await connection.fetch(
        "SELECT function_id, event_name FROM reverb.triggers ORDER BY function_id"
    )
    assert [tuple(t) for t in triggers] == [("a", "x2"), ("c", "z")]


async def stored_state(connection: asyncpg.Connection) -> tuple[str, list[tuple[str, str]]]:
    """The app's stored hash, and its (function, event) triggers."""
    digest = await connection.fetchval("SELECT definition_hash FROM reverb.apps WHERE id = 'shop'")
    triggers = await connection.fetch(
        "SELECT t.function_id, t.event_name FROM reverb.triggers t"
        " JOIN reverb.functions f ON f.id = t.function_id ORDER BY 1"
    )
    return str(digest), [(row["function_id"], row["event_name"]) for row in triggers]


async def test_concurrent_registrations_of_one_app_are_serialized(database_url: str) -> None:
    # 16 hosts register 16 versions of a new app at once: none fails or deadlocks, and the
    # stored functions are exactly those of the stored hash (no update lost or mixed).
    versions = [definition((f"f{i}", f"e{i}"), ("shared", f"s{i}")) for i in range(16)]
    by_hash = {definition_hash(app): app for app in versions}
    connections = [await asyncpg.connect(database_url) for _ in range(16)]
    try:
        for _ in range(2):
            await asyncio.gather(
                *(
                    control.register_app(connection, app, LEASE)
                    for connection, app in zip(connections, versions, strict=True)
                )
            )
            digest, triggers = await stored_state(connections[0])
            winner = by_hash[digest]
            assert triggers == sorted(
                (function.id, str(function.triggers[0].event)) for function in winner.functions
            )
        same = await asyncio.gather(
            *(control.register_app(connection, versions[3], LEASE) for connection in connections)
        )
        final = await stored_state(connections[0])
    finally:
        for connection in connections:
            await connection.close()
    assert sum(same) <= 1  # one of them applied it (unless it was already there), no more
    assert final == (definition_hash(versions[3]), [("f3", "e3"), ("shared", "s3")])


async def test_removing_a_function_wakes_its_runs_in_flight(connection: asyncpg.Connection) -> None:
    await control.register_app(connection, definition(("keep", "x"), ("doomed", "y")), LEASE)
    for run_id, function_id, status in (
        ("r-queued", "doomed", "queued"),
        ("r-sleeping", "doomed", "sleeping"),
        ("r-waiting", "doomed", "waiting"),
        ("r-done", "doomed", "completed"),
        ("r-kept", "keep", "sleeping"),
    ):
        await connection.execute(
            "INSERT INTO reverb.runs (id, function_id, app_id, status, max_attempts)"
            " VALUES ($1, $2, 'shop', $3, 1)",
            run_id,
            function_id,
            status,
        )

    await control.register_app(connection, definition(("keep", "x")), LEASE)

    payloads = await connection.fetch(
        f"SELECT payload FROM {jobs.QUEUE_TABLE} WHERE entrypoint = 'advance_run'"
    )
    woken = sorted(orjson.loads(row["payload"])["run_id"] for row in payloads)
    assert woken == ["r-queued", "r-sleeping", "r-waiting"]
    assert await connection.fetchval("SELECT count(*) FROM reverb.functions") == 1
