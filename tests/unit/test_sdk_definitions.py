"""Declaring functions: definitions attached to plain functions, checked eagerly."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import reverb
from reverb import Context, CronTrigger, EventTrigger, FunctionDefinition, cron, event


def fresh() -> Callable[[Context], Awaitable[None]]:
    """A new undecorated function (declaring one attaches a definition to it)."""

    async def handler(ctx: Context) -> None:
        return None

    return handler


def test_a_definition_is_attached_and_the_function_stays_callable() -> None:
    app = reverb.App("shop")

    @app.function("handle-sign-up", trigger=event("user.signed_up"), retries=2, name="Sign-up")
    async def handle_sign_up(ctx: Context) -> dict[str, Any]:
        return {"ok": True}

    definition = FunctionDefinition.of(handle_sign_up)
    assert definition == FunctionDefinition(
        "handle-sign-up", "Sign-up", (EventTrigger("user.signed_up"),), 2, handle_sign_up
    )
    assert definition.handler is handle_sign_up
    assert dict(app.functions) == {"handle-sign-up": definition}
    assert handle_sign_up.__name__ == "handle_sign_up"


def test_defaults_and_several_triggers() -> None:
    app = reverb.App("shop")
    triggers: list[reverb.Trigger] = [event("a"), cron("0 9 * * *", tz="Europe/Paris")]
    handler = app.function("report", trigger=triggers)(fresh())
    definition = FunctionDefinition.of(handler)
    assert (definition.name, definition.retries) == ("report", 4)
    assert definition.triggers == (EventTrigger("a"), CronTrigger("0 9 * * *", "Europe/Paris"))


def test_functions_is_read_only() -> None:
    app = reverb.App("shop")
    with pytest.raises(TypeError):
        app.functions["x"] = None  # type: ignore[index]


@pytest.mark.parametrize("app_id", ["", "  ", None, " shop"])
def test_a_bad_app_id_is_refused(app_id: object) -> None:
    with pytest.raises(ValueError, match="app id"):
        reverb.App(app_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("function_id", ["", "   ", None, "trailing "])
def test_a_bad_function_id_is_refused(function_id: object) -> None:
    with pytest.raises(ValueError, match="function id"):
        reverb.App("shop").function(function_id, trigger=event("e"))  # type: ignore[arg-type]


def test_a_duplicate_function_id_is_refused() -> None:
    app = reverb.App("shop")
    app.function("f", trigger=event("e"))(fresh())
    with pytest.raises(ValueError, match="already has a function 'f'"):
        app.function("f", trigger=event("e"))(fresh())


def test_one_function_cannot_be_declared_twice() -> None:
    handler = fresh()
    reverb.App("one").function("f", trigger=event("e"))(handler)
    with pytest.raises(ValueError, match="already declared as function 'f'"):
        reverb.App("two").function("g", trigger=event("e"))(handler)


@pytest.mark.parametrize("retries", [-1, 21, 100])
def test_retries_outside_0_to_20_are_refused(retries: int) -> None:
    with pytest.raises(ValueError, match="between 0 and 20"):
        reverb.App("shop").function("f", trigger=event("e"), retries=retries)


@pytest.mark.parametrize("retries", [1.5, "3", True])
def test_retries_must_be_an_int(retries: object) -> None:
    with pytest.raises(TypeError, match="retries must be an int"):
        reverb.App("shop").function("f", trigger=event("e"), retries=retries)  # type: ignore[arg-type]


def test_a_sync_function_is_refused() -> None:
    def sync(ctx: Context) -> None:
        return None

    with pytest.raises(TypeError, match="must be an async function"):
        reverb.App("shop").function("f", trigger=event("e"))(sync)  # type: ignore[type-var]


@pytest.mark.parametrize("trigger", [[], "user.created", [event("a"), "b"], None])
def test_a_bad_trigger_is_refused(trigger: object) -> None:
    with pytest.raises((TypeError, ValueError), match="trigger"):
        reverb.App("shop").function("f", trigger=trigger)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", " ", " padded", None])
def test_a_bad_event_name_is_refused(name: object) -> None:
    with pytest.raises(ValueError, match="event name"):
        event(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expression",
    ["*/5 * * * *", "0 9 * * 1-5", "0,30 8-18 * jan-mar mon", "15 3 1 */2 7", "0  9 * * *"],
)
def test_valid_cron_expressions(expression: str) -> None:
    assert cron(expression).expression == " ".join(expression.split())


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("0 9 * *", "5 fields"),
        ("@daily", "5 fields"),
        ("60 * * * *", "minute '60'"),
        ("* 24 * * *", "hour '24'"),
        ("* * 0 * *", "day of month '0'"),
        ("* * * 13 *", "month '13'"),
        ("* * * * 8", "day of week '8'"),
        ("*/0 * * * *", "step of 0"),
        ("every day at 9", "5 fields"),
        ("a b c d e", "minute 'a'"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expression: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        cron(expression)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        cron("0 9 * * *", tz="Mars/Olympus")


def test_of_an_undecorated_function_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not decorated"):
        FunctionDefinition.of(fresh())
