"""Host leases: hosts renew their registration, stale ones expire, a stopping host releases
its lease at once, and workers share the work among the live hosts of an app.

Real parts: a gateway (its Ingress on a free port), function hosts registering through it,
a worker. Time passes as leases end in PostgreSQL, which the tests await.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import grpc
import orjson
import pytest
from google.protobuf.duration_pb2 import Duration
from pydantic import SecretStr

import reverb
from reverb import Context, event
from reverb_contracts.v1 import common_pb2, ingress_pb2, ingress_pb2_grpc
from reverb_function_host import Host, HostSettings
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import control
from tests.e2e.processes import eventually
from tests.integration.test_worker_hosts import dead_address, send
from tests.integration.test_worker_runs import SIGNING_KEY, worker_settings

APP_ID = "lease-tests"
DEFINITION = common_pb2.AppDefinition(
    id=APP_ID,
    functions=[
        common_pb2.FunctionDefinition(id="whoami", triggers=[common_pb2.Trigger(event="lease.who")])
    ],
)

Settings = Callable[..., HostSettings]


def tagged_app(tag: str) -> reverb.App:
    """The app as one host serves it: the same definitions, answering with `tag`."""
    app = reverb.App(APP_ID)

    @app.function("whoami", trigger=event("lease.who"))
    async def whoami(ctx: Context) -> str:
        return tag

    return app


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromMilliseconds(round(value * 1000))
    return duration


@pytest.fixture
async def ingress(gateway: Gateway) -> AsyncIterator[ingress_pb2_grpc.IngressAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        yield ingress_pb2_grpc.IngressStub(channel)


@pytest.fixture
def settings(gateway: Gateway) -> Settings:
    def make(**changes: object) -> HostSettings:
        base = HostSettings(
            host_address="127.0.0.1:0",
            ingress_address=f"127.0.0.1:{gateway.grpc_port}",
            signing_key=SIGNING_KEY,
        )
        return base.model_copy(update=changes)

    return make


@pytest.fixture
async def worker(database_url: str) -> AsyncIterator[Worker]:
    running = await start_worker(worker_settings(database_url))
    yield running
    await running.stop()


@asynccontextmanager
async def serving(
    tag: str, settings: HostSettings, *, register: bool = True
) -> AsyncIterator[Host]:
    """A host of the app answering `tag`, registered through the gateway (unless not)."""
    host = await start_host(tagged_app(tag), settings, register_app=register)
    try:
        if register:
            async with asyncio.timeout(10):
                await host.registered.wait()
        yield host
    finally:
        await host.stop(0)


async def lease_row(connection: asyncpg.Connection, address: str) -> asyncpg.Record | None:
    return await connection.fetchrow(
        "SELECT expires_at, instance_id, expires_at > now() AS live FROM reverb.app_hosts"
        " WHERE app_id = $1 AND address = $2",
        APP_ID,
        address,
    )


async def lease_ended(connection: asyncpg.Connection, address: str) -> None:
    async def ended() -> bool:
        row = await lease_row(connection, address)
        return row is not None and not row["live"]

    await eventually(ended, within=10, what=f"the lease of {address} to end")


async def jobs_enqueued(connection: asyncpg.Connection) -> int:
    """How many pgqueuer jobs were ever enqueued in this database."""
    count = await connection.fetchval(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pgqueuer_id_seq"
    )
    return int(count)


async def answers(connection: asyncpg.Connection, count: int) -> list[str]:
    """Send `count` events; the tags of the hosts that ran them, once every run completed.

    Each run reached a host in its first try: no run was released (which enqueues a job).
    """
    jobs_before = await jobs_enqueued(connection)
    event_ids = [await send(connection, "lease.who", {"n": n}) for n in range(count)]

    async def completed() -> bool:
        done = await connection.fetchval(
            "SELECT count(*) FROM reverb.runs WHERE status = 'completed'"
            " AND event_ids && $1::text[]",
            event_ids,
        )
        return bool(done == count)

    await eventually(completed, within=20, what=f"{count} runs to complete")
    rows = await connection.fetch(
        "SELECT output, invocations FROM reverb.runs WHERE event_ids && $1::text[]", event_ids
    )
    assert [row["invocations"] for row in rows] == [1] * count
    # Per event: its fan-out job, and the advance_run job its run was created with.
    assert await jobs_enqueued(connection) - jobs_before == 2 * count, "a run was released"
    return [orjson.loads(row["output"]) for row in rows]


async def test_two_live_hosts_both_get_work_the_later_one_does_not_take_it_all(
    connection: asyncpg.Connection, settings: Settings, worker: Worker
) -> None:
    async with serving("first", settings()), serving("second", settings()):
        tags = await answers(connection, 8)
    assert set(tags) == {"first", "second"}
    assert tags.count("first") >= 2 and tags.count("second") >= 2


async def test_a_host_that_stops_renewing_is_not_called_once_its_lease_ended(
    connection: asyncpg.Connection,
    settings: Settings,
    ingress: ingress_pb2_grpc.IngressAsyncStub,
    worker: Worker,
) -> None:
    async with (
        serving("renewing", settings()),
        serving("stale", settings(), register=False) as stale,
    ):
        # The stale host registered last, with a short lease it never renews (it still serves).
        await ingress.RegisterApp(
            ingress_pb2.RegisterAppRequest(
                app=DEFINITION, host_address=stale.address, lease=seconds(0.2)
            )
        )
        await lease_ended(connection, stale.address)
        tags = await answers(connection, 6)
    assert tags == ["renewing"] * 6
    # Ignored, not yet deleted: the next registration of the app deletes it.
    assert await lease_row(connection, stale.address) is not None


async def test_a_host_renews_its_lease_without_rewriting_the_definitions(
    connection: asyncpg.Connection, settings: Settings
) -> None:
    async with serving("renewing", settings(host_lease_seconds=0.3)) as host:
        first = await lease_row(connection, host.address)
        assert first is not None and first["live"] and first["instance_id"]
        app_before = await connection.fetchrow(
            "SELECT updated_at, xmin::text FROM reverb.apps WHERE id = $1", APP_ID
        )
        functions_before = await connection.fetch(
            "SELECT id, xmin::text FROM reverb.functions WHERE app_id = $1", APP_ID
        )

        async def renewed_past_the_first_lease() -> bool:
            row = await lease_row(connection, host.address)
            passed = await connection.fetchval("SELECT now() > $1", first["expires_at"])
            return bool(row is not None and row["live"] and passed)

        # Still live after its first lease of 0.3 s would have ended: it was renewed.
        await eventually(renewed_past_the_first_lease, within=10, what="the lease to be renewed")
        assert (
            await connection.fetchrow(
                "SELECT updated_at, xmin::text FROM reverb.apps WHERE id = $1", APP_ID
            )
            == app_before
        )
        assert (
            await connection.fetch(
                "SELECT id, xmin::text FROM reverb.functions WHERE app_id = $1", APP_ID
            )
            == functions_before
        )


async def test_a_host_that_stops_cleanly_is_removed_at_once(
    connection: asyncpg.Connection, settings: Settings, worker: Worker
) -> None:
    async with serving("staying", settings()) as staying:
        leaving = await start_host(tagged_app("leaving"), settings())
        async with asyncio.timeout(10):
            await leaving.registered.wait()
        assert await lease_row(connection, leaving.address) is not None
        await leaving.stop(0)

        assert await lease_row(connection, leaving.address) is None
        assert await lease_row(connection, staying.address) is not None
        assert await control.registered_apps(connection, [APP_ID]) == {APP_ID}
        tags = await answers(connection, 4)
    assert tags == ["staying"] * 4


async def test_the_worker_falls_through_to_the_next_live_host(
    database_url: str,
    connection: asyncpg.Connection,
    settings: Settings,
    ingress: ingress_pb2_grpc.IngressAsyncStub,
) -> None:
    # Live leases, but one address is down and one host refuses the worker's signature:
    # every run reaches the good host in its first invocation, none is released.
    refusing = settings(signing_key=SecretStr("another key"))
    async with serving("good", settings()), serving("refusing", refusing) as refuser:
        await ingress.RegisterApp(
            ingress_pb2.RegisterAppRequest(app=DEFINITION, host_address=dead_address())
        )
        worker = await start_worker(worker_settings(database_url))
        try:
            tags = await answers(connection, 6)
        finally:
            await worker.stop()
        row = await lease_row(connection, refuser.address)
        assert row is not None and row["live"]
    assert tags == ["good"] * 6


async def test_a_release_ends_only_the_lease_of_the_instance_holding_it(
    connection: asyncpg.Connection, ingress: ingress_pb2_grpc.IngressAsyncStub
) -> None:
    address = "10.0.0.1:8290"
    await ingress.RegisterApp(
        ingress_pb2.RegisterAppRequest(app=DEFINITION, host_address=address, instance_id="old")
    )
    # A new process at the same address took the lease over.
    await ingress.RenewHostLease(
        ingress_pb2.RenewHostLeaseRequest(app_id=APP_ID, host_address=address, instance_id="new")
    )
    old = ingress_pb2.ReleaseHostLeaseRequest(
        app_id=APP_ID, host_address=address, instance_id="old"
    )
    assert (await ingress.ReleaseHostLease(old)).released is False
    assert await lease_row(connection, address) is not None
    new = ingress_pb2.ReleaseHostLeaseRequest(
        app_id=APP_ID, host_address=address, instance_id="new"
    )
    assert (await ingress.ReleaseHostLease(new)).released is True
    assert await lease_row(connection, address) is None


async def test_leases_granted_and_refused(
    connection: asyncpg.Connection, ingress: ingress_pb2_grpc.IngressAsyncStub
) -> None:
    register = ingress_pb2.RegisterAppRequest(app=DEFINITION, host_address="10.0.0.1:8290")
    assert (await ingress.RegisterApp(register)).lease.ToSeconds() == 30  # the default
    register.lease.CopyFrom(seconds(3600))
    assert (await ingress.RegisterApp(register)).lease.ToSeconds() == 300  # the gateway's cap
    renew = ingress_pb2.RenewHostLeaseRequest(
        app_id=APP_ID, host_address="10.0.0.1:8290", lease=seconds(12)
    )
    assert (await ingress.RenewHostLease(renew)).lease.ToSeconds() == 12
    remaining = await connection.fetchval(
        "SELECT extract(epoch FROM expires_at - now()) FROM reverb.app_hosts WHERE app_id = $1",
        APP_ID,
    )
    assert 10 < remaining <= 12

    unknown = ingress_pb2.RenewHostLeaseRequest(app_id="nobody", host_address="10.0.0.1:1")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingress.RenewHostLease(unknown)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    refused = [
        ingress_pb2.RenewHostLeaseRequest(
            app_id=APP_ID, host_address="10.0.0.1:8290", lease=seconds(0.05)
        ),
        ingress_pb2.RenewHostLeaseRequest(
            app_id=APP_ID, host_address="10.0.0.1:8290", lease=Duration(seconds=2**62)
        ),
        ingress_pb2.RenewHostLeaseRequest(app_id=APP_ID, host_address="10.0.0.1:\x00"),
        ingress_pb2.RenewHostLeaseRequest(app_id=APP_ID, host_address=""),
        ingress_pb2.RenewHostLeaseRequest(app_id="", host_address="10.0.0.1:8290"),
        ingress_pb2.RenewHostLeaseRequest(
            app_id=APP_ID, host_address="10.0.0.1:8290", instance_id="x" * 129
        ),
    ]
    for request in refused:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingress.RenewHostLease(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingress.ReleaseHostLease(
            ingress_pb2.ReleaseHostLeaseRequest(app_id=APP_ID, host_address="a\x00b")
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_registration_deletes_the_apps_ended_leases_and_health_ignores_them(
    connection: asyncpg.Connection, ingress: ingress_pb2_grpc.IngressAsyncStub
) -> None:
    stale = ingress_pb2.RegisterAppRequest(
        app=DEFINITION, host_address="10.0.0.1:8290", lease=seconds(0.1)
    )
    await ingress.RegisterApp(stale)
    await lease_ended(connection, "10.0.0.1:8290")
    assert await control.registered_apps(connection, [APP_ID]) == set()

    await ingress.RegisterApp(
        ingress_pb2.RegisterAppRequest(app=DEFINITION, host_address="10.0.0.2:8290")
    )
    addresses = await connection.fetch("SELECT address FROM reverb.app_hosts")
    assert [row["address"] for row in addresses] == ["10.0.0.2:8290"]
    assert await control.registered_apps(connection, [APP_ID]) == {APP_ID}
