"""Fixtures shared by the integration tests."""

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from reverb_ingress_gateway import Gateway, GatewaySettings, start
from reverb_queue_worker.runs.checkpoints import CheckpointWriter
from tests import mongo


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[Gateway]:
    """A gateway in dev mode (no API keys) on free ports, over the test's database."""
    gateway = await start(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
        )
    )
    yield gateway
    await gateway.stop()


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[CheckpointWriter]:
    """A running checkpoint writer over its own small pool."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    checkpoints = CheckpointWriter(pool)
    checkpoints.start()
    yield checkpoints
    await checkpoints.close()
    await pool.close()


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """A MongoDB for the log sink: REVERB_TEST_MONGODB_URL, else nx-27017 (`tests.mongo`)."""
    with mongo.server_url() as url:
        yield url
