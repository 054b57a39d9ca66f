"""`@app.function`'s flow-control keywords: what they accept, and the clear errors for
what they do not (expressions themselves are compiled by the engine at registration)."""

from datetime import timedelta

import pytest

import reverb
from reverb import Context, event


def define(**options: object) -> reverb.FunctionDefinition:
    app = reverb.App("flow")

    async def handler(ctx: Context) -> None: ...

    return reverb.FunctionDefinition.of(
        app.function("f", trigger=event("e"), **options)(handler)  # type: ignore[arg-type]
    )


def test_the_issue_s_example_is_accepted() -> None:
    definition = define(
        concurrency=reverb.Concurrency(limit=3, key="event.data.tenant_id"),
        throttle=reverb.Throttle(limit=10, period="1m", key=None, burst=1),
        rate_limit=reverb.RateLimit(limit=1, period="1h", key="event.data.user_id"),
        priority=reverb.Priority(run="event.data.plan == 'enterprise' ? 120 : 0"),
    )
    assert definition.concurrency == (reverb.Concurrency(3, "event.data.tenant_id"),)
    assert definition.throttle == reverb.Throttle(10, timedelta(minutes=1))
    assert definition.throttle is not None and definition.throttle.period == timedelta(minutes=1)
    assert definition.rate_limit == reverb.RateLimit(1, "1h", "event.data.user_id")
    assert definition.priority == reverb.Priority("event.data.plan == 'enterprise' ? 120 : 0")


def test_an_int_is_one_limit_and_a_list_is_up_to_two() -> None:
    assert define(concurrency=5).concurrency == (reverb.Concurrency(5),)
    two = [
        reverb.Concurrency(1, key="event.data.a"),
        reverb.Concurrency(10, scope="app", key="'x'"),
    ]
    assert define(concurrency=two).concurrency == tuple(two)
    assert define().concurrency == ()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"concurrency": 0}, ValueError, "Concurrency limit must be 1 or more, not 0"),
        ({"concurrency": [reverb.Concurrency(1)] * 3}, ValueError, "1 to 2 limits, not 3"),
        ({"concurrency": []}, ValueError, "1 to 2 limits, not 0"),
        ({"concurrency": "3"}, TypeError, "must be an int or reverb.Concurrency"),
        ({"throttle": 10}, TypeError, "function 'f': throttle must be reverb.Throttle"),
        ({"rate_limit": {"limit": 1}}, TypeError, "rate_limit must be reverb.RateLimit"),
        ({"priority": "event.data.x"}, TypeError, "priority must be reverb.Priority"),
    ],
)
def test_a_wrong_keyword_is_refused_naming_the_function(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        define(**options)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: reverb.Concurrency(True), "Concurrency limit must be an int"),
        (lambda: reverb.Concurrency(2, key=""), "Concurrency key must be a CEL expression"),
        (
            lambda: reverb.Concurrency(2, scope="tenant"),  # type: ignore[arg-type]
            "scope must be 'function' or 'app'",
        ),
        (lambda: reverb.Throttle(1, "soon"), "Throttle period: 'soon'"),
        (lambda: reverb.Throttle(1, 0), "Throttle period must be longer than zero"),
        (lambda: reverb.Throttle(1, "1s", burst=0), "Throttle burst must be 1 or more"),
        (lambda: reverb.RateLimit(0, "1h"), "RateLimit limit must be 1 or more"),
        (lambda: reverb.Priority(" "), "Priority run must be a CEL expression"),
    ],
)
def test_an_option_with_a_bad_value_is_refused(make: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError)) as raised:
        make()  # type: ignore[operator]
    assert message in str(raised.value)


def test_retry_after_can_pause_the_key() -> None:
    assert reverb.RetryAfterError("30s", pause_key=True).pause_key is True
    assert reverb.RetryAfterError("30s").pause_key is False
