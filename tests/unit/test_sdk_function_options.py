"""`@app.function(..., on_failure=handler, timeouts=reverb.Timeouts(...))` as definitions."""

from datetime import timedelta

import pytest

import reverb
from reverb import Context, event


async def handle(ctx: Context) -> None: ...


def test_the_handler_is_a_function_of_its_own_without_triggers() -> None:
    app = reverb.App("options")

    @app.function("charge", trigger=event("e"), retries=2, name="Charge", on_failure=handle)
    async def charge(ctx: Context) -> None: ...

    definition = reverb.FunctionDefinition.of(charge)
    assert definition.on_failure == "charge-failure"
    handler = app.functions["charge-failure"]
    assert (handler.name, handler.triggers, handler.retries) == ("Charge (on failure)", (), 2)
    assert handler.handler is handle
    assert list(app.functions) == ["charge", "charge-failure"]


def test_timeouts_are_durations() -> None:
    app = reverb.App("options")

    @app.function("slow", trigger=event("e"), timeouts=reverb.Timeouts(start="5m", finish=90))
    async def slow(ctx: Context) -> None: ...

    @app.function("unbounded", trigger=event("e"), timeouts=reverb.Timeouts(finish="1h"))
    async def unbounded(ctx: Context) -> None: ...

    assert app.functions["slow"].start_timeout == timedelta(minutes=5)
    assert app.functions["slow"].finish_timeout == timedelta(seconds=90)
    assert app.functions["unbounded"].start_timeout is None
    assert app.functions["unbounded"].finish_timeout == timedelta(hours=1)


def test_bad_options_are_refused_when_declared() -> None:
    app = reverb.App("options")

    def not_async(ctx: Context) -> None: ...

    with pytest.raises(TypeError, match="'f'.*async function"):
        app.function("f", trigger=event("e"), on_failure=not_async)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'f': timeouts.start must be longer than 0"):
        app.function("f", trigger=event("e"), timeouts=reverb.Timeouts(start=0))
    with pytest.raises(ValueError, match="parsecs"):
        app.function("f", trigger=event("e"), timeouts=reverb.Timeouts(finish="5 parsecs"))
    with pytest.raises(TypeError, match="reverb.Timeouts"):
        app.function("f", trigger=event("e"), timeouts={"start": "5m"})  # type: ignore[arg-type]


def test_the_handlers_id_cannot_be_taken_twice() -> None:
    app = reverb.App("options")

    @app.function("charge-failure", trigger=event("e"))
    async def taken(ctx: Context) -> None: ...

    with pytest.raises(ValueError, match="already has a function 'charge-failure'"):

        @app.function("charge", trigger=event("e"), on_failure=handle)
        async def charge(ctx: Context) -> None: ...

    assert "charge" not in app.functions
