"""Fixtures shared by the integration tests."""

from collections.abc import AsyncIterator

import pytest

from reverb_ingress_gateway import Gateway, GatewaySettings, start


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
