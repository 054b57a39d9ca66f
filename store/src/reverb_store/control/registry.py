"""App registration: an app's functions and triggers, replaced whole when its definitions change.

An app's definitions are hashed (sha256 of their canonical JSON: sorted keys,
functions by id, no whitespace; the same bytes on every host and Python
version). Registering the same definitions again only records the host's lease
(the app's, functions' and triggers' rows are not written); different ones
replace the app's functions and triggers in one transaction. Registrations of
one app are serialized by a transaction-scoped advisory lock on the app (taken
first, before any row), so hosts registering at once never lose an update or
deadlock, even for an app no row exists for yet. A function the new definitions
no longer have is deleted, and its runs in flight (queued, sleeping, waiting)
get an `advance_run` due now in the same transaction: their claim sees the
function gone and fails them with FunctionRemoved (a run executing meanwhile
fails at its next claim). A function id is unique across apps: one owned by
another app is refused. Leases themselves are `leases`' concern (renewed and
released without the definitions).
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson

from reverb.schedules import CatchUp, Overlap
from reverb_store import jobs
from reverb_store.control.leases import HostLease, upsert_lease
from reverb_store.cron.schedules import ScheduleDefinition, sync_schedules
from reverb_store.execution import cancel_on
from reverb_store.execution.cancel_on import CancelCondition
from reverb_store.execution.waits import DeclaredWait
from reverb_store.flow.options import NO_FLOW, FlowOptions


@dataclass(frozen=True, slots=True)
class TriggerDefinition:
    """Exactly one of `event` and `cron` is set; `timezone` and the policies go with
    `cron` (timezone None: UTC; jitter zero: none)."""

    event: str | None = None
    cron: str | None = None
    timezone: str | None = None
    overlap: Overlap = "allow"
    catch_up: CatchUp = "latest"
    catch_up_window: timedelta = timedelta(hours=1)
    jitter: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class FunctionDefinition:
    id: str
    name: str
    retries: int
    triggers: tuple[TriggerDefinition, ...]
    # The function of the same app that handles this one's failures (a run of its own).
    on_failure: str | None = None
    # From queued to the first invocation, and from then to the end; None: no limit.
    start_timeout: timedelta | None = None
    finish_timeout: timedelta | None = None
    flow: FlowOptions = NO_FLOW
    # Events that cancel a run (`execution.cancel_on`), in declaration order.
    cancel_on: tuple[CancelCondition, ...] = ()
    # The literal expressions of the function's waits, checked at registration only:
    # neither stored nor hashed (`execution.waits.check_declared`).
    waits: tuple[DeclaredWait, ...] = ()


@dataclass(frozen=True, slots=True)
class AppDefinition:
    id: str
    functions: tuple[FunctionDefinition, ...]


class FunctionOwnedByAnotherApp(Exception):
    """A function id the app registers already belongs to another app."""

    def __init__(self, function_id: str, owner: str) -> None:
        super().__init__(f"function {function_id!r} is already registered by app {owner!r}")
        self.function_id = function_id
        self.owner = owner


def canonical_json(app: AppDefinition) -> bytes:
    """The app's definitions as canonical JSON: sorted keys, functions by id. Options left
    unset are left out, so that adding an option leaves the hash of definitions that do
    not use it as it was."""
    document = {
        "id": app.id,
        "functions": [
            _canonical_function(function)
            for function in sorted(app.functions, key=lambda function: function.id)
        ],
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def _canonical_function(function: FunctionDefinition) -> dict[str, object]:
    document: dict[str, object] = {
        "id": function.id,
        "name": function.name,
        "retries": function.retries,
        "triggers": [_canonical_trigger(trigger) for trigger in function.triggers],
    }
    if function.on_failure is not None:
        document["on_failure"] = function.on_failure
    for key, limit in (
        ("start_timeout_ms", function.start_timeout),
        ("finish_timeout_ms", function.finish_timeout),
    ):
        if limit is not None:
            document[key] = limit // timedelta(milliseconds=1)
    # Only when set: the definitions of functions without flow control hash as before.
    if function.flow:
        document["flow"] = function.flow.document()
    if function.cancel_on:
        document["cancel_on"] = cancel_on.document(function.cancel_on)
    return document


def _canonical_trigger(trigger: TriggerDefinition) -> dict[str, object]:
    if trigger.event is not None:
        return {"event": trigger.event}
    return {
        "cron": trigger.cron,
        "timezone": trigger.timezone,
        "overlap": trigger.overlap,
        "catch_up": trigger.catch_up,
        "catch_up_window": trigger.catch_up_window.total_seconds(),
        "jitter": trigger.jitter.total_seconds(),
    }


def definition_hash(app: AppDefinition) -> str:
    return hashlib.sha256(canonical_json(app)).hexdigest()


_UPSERT_FUNCTIONS = """
INSERT INTO reverb.functions AS f
    (id, app_id, name, retries, on_failure, start_timeout, finish_timeout, flow, cancel_on)
SELECT id, $1, name, retries, on_failure, start_timeout, finish_timeout, flow::jsonb,
       cancel_on::jsonb
FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::interval[], $7::interval[],
            $8::text[], $9::text[])
    AS t (id, name, retries, on_failure, start_timeout, finish_timeout, flow, cancel_on)
ON CONFLICT (id) DO UPDATE
    SET name = excluded.name, retries = excluded.retries, on_failure = excluded.on_failure,
        start_timeout = excluded.start_timeout, finish_timeout = excluded.finish_timeout,
        flow = excluded.flow, cancel_on = excluded.cancel_on,
        updated_at = now()
    WHERE f.app_id = excluded.app_id
RETURNING id
"""


# Held until the transaction ends; the key is namespaced so that it does not collide
# with another advisory lock on the same text (a hash collision only serializes two apps).
_LOCK_APP = "SELECT pg_advisory_xact_lock(hashtextextended('reverb.apps:' || $1, 0))"

# The runs in flight of removed functions, woken now so that their claim fails them.
_IN_FLIGHT_OF = """
SELECT id, traceparent FROM reverb.runs
WHERE function_id = ANY($1::text[]) AND status IN ('queued', 'sleeping', 'waiting')
ORDER BY id
"""


async def register_app(
    connection: asyncpg.Connection,
    app: AppDefinition,
    lease: HostLease,
    now: datetime | None = None,
) -> bool:
    """Store the app's definitions and its host's lease; False if the definitions were
    unchanged. The app's leases that have ended are deleted. Its cron schedules are
    updated in the same transaction (`reverb_store.cron.schedules`), their next ticks
    counted from `now` (default: the database's clock)."""
    digest = definition_hash(app)
    # Read before the transaction, which then locks wait_keys before any read of it.
    new_keys = await cancel_on.missing_wait_keys(
        connection,
        cancel_on.wait_keys([entry for function in app.functions for entry in function.cancel_on]),
    )
    async with connection.transaction():
        await connection.execute(_LOCK_APP, app.id)
        stored = await connection.fetchval(
            "SELECT definition_hash FROM reverb.apps WHERE id = $1", app.id
        )
        if stored == digest:
            await upsert_lease(connection, app.id, lease)
            return False
        await connection.execute(
            "INSERT INTO reverb.apps (id, definition_hash, definition) VALUES ($1, $2, $3::jsonb)"
            " ON CONFLICT (id) DO UPDATE SET definition_hash = excluded.definition_hash,"
            " definition = excluded.definition, updated_at = now()",
            app.id,
            digest,
            canonical_json(app).decode(),
        )
        # Before any run of a function with cancel_on can exist: every event of a
        # cancel_on's name accepted from the commit on gets a match_waits job.
        await cancel_on.register_wait_keys(connection, new_keys)
        await _replace_functions(connection, app)
        if now is None:
            now = await connection.fetchval("SELECT now()")
        await sync_schedules(connection, app.id, _schedules(app), now)
        await upsert_lease(connection, app.id, lease)
        return True


def _schedules(app: AppDefinition) -> list[ScheduleDefinition]:
    return [
        ScheduleDefinition(
            function_id=function.id,
            cron=trigger.cron,
            timezone=trigger.timezone or "UTC",
            overlap=trigger.overlap,
            catch_up=trigger.catch_up,
            catch_up_window=trigger.catch_up_window,
            jitter=trigger.jitter,
        )
        for function in app.functions
        for trigger in function.triggers
        if trigger.cron is not None
    ]


async def _replace_functions(connection: asyncpg.Connection, app: AppDefinition) -> None:
    ids = [function.id for function in app.functions]
    removed = await connection.fetch(
        "DELETE FROM reverb.functions WHERE app_id = $1 AND NOT (id = ANY($2::text[]))"
        " RETURNING id",
        app.id,
        ids,
    )
    if removed:
        await _wake_runs_of(connection, [row["id"] for row in removed])
    written = await connection.fetch(
        _UPSERT_FUNCTIONS,
        app.id,
        ids,
        [function.name for function in app.functions],
        [function.retries for function in app.functions],
        [function.on_failure for function in app.functions],
        [function.start_timeout for function in app.functions],
        [function.finish_timeout for function in app.functions],
        [function.flow.to_json() for function in app.functions],
        [cancel_on.to_json(function.cancel_on) for function in app.functions],
    )
    if len(written) != len(ids):
        mine = {row["id"] for row in written}
        taken = next(function_id for function_id in ids if function_id not in mine)
        owner = await connection.fetchval(
            "SELECT app_id FROM reverb.functions WHERE id = $1", taken
        )
        raise FunctionOwnedByAnotherApp(taken, str(owner))
    await connection.execute("DELETE FROM reverb.triggers WHERE function_id = ANY($1::text[])", ids)
    triggers = [
        (function.id, trigger.event, trigger.cron, trigger.timezone)
        for function in app.functions
        for trigger in function.triggers
    ]
    await connection.execute(
        "INSERT INTO reverb.triggers (function_id, event_name, cron, timezone)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
        *([list(column) for column in zip(*triggers, strict=True)] if triggers else [[]] * 4),
    )


async def _wake_runs_of(connection: asyncpg.Connection, function_ids: list[str]) -> None:
    runs = await connection.fetch(_IN_FLIGHT_OF, function_ids)
    if runs:
        await jobs.enqueue(
            connection, [jobs.AdvanceRun(row["id"], row["traceparent"] or None) for row in runs]
        )


async def registered_apps(connection: asyncpg.Connection, app_ids: list[str]) -> set[str]:
    """Those of `app_ids` that a host has registered and holds a live lease of (one that
    has not ended, was not released, and that `forget_hosts` has not reset)."""
    rows = await connection.fetch(
        "SELECT DISTINCT app_id FROM reverb.app_hosts"
        " WHERE app_id = ANY($1::text[]) AND expires_at > now()",
        app_ids,
    )
    return {row["app_id"] for row in rows}


async def forget_hosts(connection: asyncpg.Connection, app_id: str) -> None:
    """Drop the host addresses of `app_id` (its hosts are known to be gone): it counts as
    registered again once a host registers it anew. Its functions and runs stay."""
    await connection.execute("DELETE FROM reverb.app_hosts WHERE app_id = $1", app_id)
