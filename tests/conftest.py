"""Fixtures shared by every test: a real PostgreSQL, a fresh migrated database per test.

Async tests and fixtures run on uvloop, the loop the services run on, unless
`REVERB_TEST_LOOP=asyncio` (`tests/loops.py`).
"""

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping

import asyncpg
import pytest

from tests import postgres
from tests.loops import LOOPS, LoopFactory, chosen_loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """pytest-asyncio's hook: every async test and fixture runs on the chosen loop."""
    name = chosen_loop()
    return {name: LOOPS[name]}


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with postgres.server_url() as url:
        yield url


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str) -> Iterator[str]:
    name = asyncio.run(postgres.create_template(postgres_server_url))
    yield name
    asyncio.run(postgres.drop_database(postgres_server_url, name))


@pytest.fixture
async def database_url(postgres_server_url: str, template_database: str) -> AsyncIterator[str]:
    """The URL of a fresh database with Reverb's schema, dropped after the test."""
    name = await postgres.create_database(postgres_server_url, template_database)
    yield postgres.with_database(postgres_server_url, name)
    await postgres.drop_database(postgres_server_url, name)


@pytest.fixture
async def connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()
