"""The gateway's key caches: a revocation (or a new key) reaches every gateway at once through
NOTIFY reverb_api_keys, unknown keys are remembered for a while, and the listening connection
comes back after it is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import grpc
import httpx
import pytest

from reverb_contracts.v1 import ingress_pb2, ingress_pb2_grpc
from reverb_ingress_gateway import Gateway, GatewaySettings, start
from reverb_ingress_gateway.auth import LISTENER_NAME, ApiKeys
from reverb_store.control import create_api_key, hash_key, revoke_api_key
from tests.integration.test_cli import run_cli

_WITHIN = 10.0


def _settings(database_url: str) -> GatewaySettings:
    return GatewaySettings(
        database_url=database_url,
        http_address="127.0.0.1:0",
        ingress_address="127.0.0.1:0",
        # Long enough that only a notified change can explain a fresh answer.
        api_key_cache_seconds=600,
        api_key_unknown_cache_seconds=600,
    )


@pytest.fixture
async def gateways(database_url: str) -> AsyncIterator[list[Gateway]]:
    started = [await start(_settings(database_url)) for _ in range(2)]
    yield started
    for gateway in started:
        await gateway.stop()


def _keys(gateway: Gateway) -> ApiKeys:
    assert gateway.keys is not None
    return gateway.keys


async def _status(gateway: Gateway, key: str) -> int:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        response = await client.get("/functions", headers={"authorization": f"Bearer {key}"})
        return response.status_code


async def test_a_revocation_reaches_every_gateway_at_once(
    gateways: list[Gateway], connection: asyncpg.Connection, database_url: str
) -> None:
    key_id, key = await create_api_key(connection, "revoked", ["read"])
    for gateway in gateways:
        assert await _status(gateway, key) == 200
        assert await _status(gateway, key) == 200
        assert _keys(gateway).lookups == 1  # the second call was answered from the cache
    generations = [_keys(gateway).generation for gateway in gateways]
    revoked = await run_cli("keys", "revoke", key_id, env={"REVERB_DATABASE_URL": database_url})
    assert revoked.code == 0, revoked
    for gateway, generation in zip(gateways, generations, strict=True):
        # The NOTIFY, not the cache time (10 minutes), drops the cache.
        await asyncio.wait_for(_keys(gateway).changed_since(generation), _WITHIN)
        assert await _status(gateway, key) == 401


async def test_wrong_keys_cost_one_query_until_a_key_changes(
    gateways: list[Gateway], connection: asyncpg.Connection
) -> None:
    gateway = gateways[0]
    keys = _keys(gateway)
    wrong = "rvb_" + "w" * 43
    for _ in range(20):
        assert await _status(gateway, wrong) == 401
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await ingress.ListFunctions(
                    ingress_pb2.ListFunctionsRequest(),
                    metadata=(("authorization", f"Bearer {wrong}"),),
                )
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert keys.lookups == 1
    # The key becomes a live one (as if just created with it): it works at once.
    generation = keys.generation
    await connection.execute(
        "INSERT INTO reverb.api_keys (id, name, key_hash, scopes, apps)"
        " VALUES ('late', 'late', $1, '{read}', '{}')",
        hash_key(wrong),
    )
    await asyncio.wait_for(keys.changed_since(generation), _WITHIN)
    assert await _status(gateway, wrong) == 200
    assert keys.lookups == 2


async def test_the_unknown_key_cache_is_bounded(
    database_url: str, connection: asyncpg.Connection
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2)
    keys = ApiKeys(
        pool,
        database_url=database_url,
        cache_seconds=600,
        unknown_cache_seconds=600,
        timeout=5,
        max_cached=3,
    )
    await keys.start()
    try:
        assert keys.listening
        wrong = [f"Bearer rvb_wrong_{index}" for index in range(5)]
        for authorization in wrong:
            assert await keys.grant(authorization) is None
        assert keys.lookups == 5
        # The three newest are remembered; the two oldest were let go.
        for authorization in wrong[2:]:
            assert await keys.grant(authorization) is None
        assert keys.lookups == 5
        assert await keys.grant(wrong[0]) is None
        assert keys.lookups == 6
    finally:
        await keys.close()
        await pool.close()


async def test_the_listener_comes_back_and_nothing_is_cached_meanwhile(
    gateways: list[Gateway], connection: asyncpg.Connection
) -> None:
    gateway = gateways[0]
    keys = _keys(gateway)
    key_id, key = await create_api_key(connection, "listener", ["read"])
    assert await _status(gateway, key) == 200
    generation = keys.generation
    terminated = await connection.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = $1 AND datname = current_database()",
        LISTENER_NAME,
    )
    assert terminated == 2  # one per gateway
    # Losing the listener drops the caches; so does coming back (changes may have been missed).
    await asyncio.wait_for(keys.changed_since(generation), _WITHIN)
    while not keys.listening:
        await asyncio.wait_for(keys.changed_since(keys.generation), _WITHIN)
    before = keys.lookups
    assert await _status(gateway, key) == 200
    assert await _status(gateway, key) == 200
    assert keys.lookups == before + 1  # caching again
    generation = keys.generation
    await revoke_api_key(connection, key_id)
    await asyncio.wait_for(keys.changed_since(generation), _WITHIN)
    assert await _status(gateway, key) == 401
