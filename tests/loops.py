"""The event loops the test suite can run on, and the one it runs on.

uvloop by default, the loop the services run on (`reverb_cli.running`), so that a bug of
uvloop's kind (a timer handle without `when()`, forking from a loop with threads) shows in
the tests; `REVERB_TEST_LOOP=asyncio` runs the suite on the standard library's loop.
"""

import asyncio
import os
from collections.abc import Callable

import pytest
import uvloop

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# By the name REVERB_TEST_LOOP gives.
LOOPS: dict[str, LoopFactory] = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}

DEFAULT = "uvloop"


def chosen_loop() -> str:
    """The loop REVERB_TEST_LOOP names (unset or empty: uvloop)."""
    name = os.environ.get("REVERB_TEST_LOOP") or DEFAULT
    if name not in LOOPS:
        raise pytest.UsageError(f"REVERB_TEST_LOOP={name!r}: expected one of {sorted(LOOPS)}")
    return name
