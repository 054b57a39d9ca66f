"""The suite runs on the loop the services run on: uvloop, unless REVERB_TEST_LOOP says
otherwise (`tests/loops.py`)."""

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import uvloop

from tests.loops import chosen_loop


@pytest.fixture
async def fixture_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    yield asyncio.get_running_loop()


def test_uvloop_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REVERB_TEST_LOOP", raising=False)
    assert chosen_loop() == "uvloop"
    monkeypatch.setenv("REVERB_TEST_LOOP", "asyncio")
    assert chosen_loop() == "asyncio"
    monkeypatch.setenv("REVERB_TEST_LOOP", "trio")
    with pytest.raises(pytest.UsageError, match="REVERB_TEST_LOOP"):
        chosen_loop()


async def test_tests_and_fixtures_run_on_the_chosen_loop(
    fixture_loop: asyncio.AbstractEventLoop,
) -> None:
    loop = asyncio.get_running_loop()
    assert loop is fixture_loop
    on_uvloop = isinstance(loop, uvloop.Loop)
    assert on_uvloop == (os.environ.get("REVERB_TEST_LOOP", "uvloop") in ("uvloop", ""))
