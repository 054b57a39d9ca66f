"""CEL expressions (`reverb_store.expressions`): compiled once, failures named by origin."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reverb_store.expressions import ExpressionError, compile_expression

EVENT = frozenset({"event"})
WAIT = frozenset({"event", "async"})


def test_a_condition_over_the_trigger_and_the_candidate() -> None:
    condition = compile_expression(
        "event.data.order_id == async.data.order_id && async.data.amount > 10",
        variables=WAIT,
        what="function 'checkout', step 'paid': if_",
    )
    trigger = {"data": {"order_id": "o-1"}}
    assert condition.evaluate(
        {"event": trigger, "async": {"data": {"order_id": "o-1", "amount": 11}}}
    )
    assert not condition.evaluate(
        {"event": trigger, "async": {"data": {"order_id": "o-2", "amount": 11}}}
    )


def test_a_priority_and_a_key() -> None:
    priority = compile_expression(
        "event.data.plan == 'enterprise' ? 120 : 0", variables=EVENT, what="priority.run"
    )
    assert priority.evaluate({"event": {"data": {"plan": "enterprise"}}}) == 120
    assert priority.evaluate({"event": {"data": {"plan": "free"}}}) == 0
    key = compile_expression("event.data.tenant_id", variables=EVENT, what="concurrency.key")
    assert key.evaluate({"event": {"data": {"tenant_id": "t-9"}}}) == "t-9"


def test_integers_beyond_doubles_stay_exact() -> None:
    key = compile_expression("event.data.id", variables=EVENT, what="key")
    assert key.evaluate({"event": {"data": {"id": 2**63 + 5}}}) == 2**63 + 5


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("event.data.", "function 'f', step 's': if_: Failed to parse expression"),
        ("", "function 'f', step 's': if_: the expression is empty"),
        ("  ", "the expression is empty"),
        ("a\x00b", "NUL"),
        ("x" * 5000, "longer than 4096"),
        ("order.id == 1", "unknown variable order in 'order.id == 1' (allowed: async, event)"),
    ],
)
def test_a_bad_expression_is_refused_naming_its_origin(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_expression(source, variables=WAIT, what="function 'f', step 's': if_")
    assert message in str(raised.value)
    assert str(raised.value).startswith("function 'f', step 's': if_: ")


def test_names_bound_by_macros_are_not_unknown_variables() -> None:
    condition = compile_expression(
        "event.data.items.exists(item, item.sku == 'a')", variables=EVENT, what="if_"
    )
    assert condition.evaluate({"event": {"data": {"items": [{"sku": "b"}, {"sku": "a"}]}}}) is True


@pytest.mark.parametrize(
    ("source", "data", "message"),
    [
        ("event.data.missing == 1", {}, "if_: no field 'missing'"),
        ("event.data.n > 'x'", {"n": 1}, "if_: No such overload"),
        ("1 / event.data.n", {"n": 0}, "if_: division by zero"),
    ],
)
def test_an_evaluation_failure_is_an_expression_error(
    source: str, data: dict[str, object], message: str
) -> None:
    expression = compile_expression(source, variables=EVENT, what="if_")
    with pytest.raises(ExpressionError) as raised:
        expression.evaluate({"event": {"data": data}})
    assert message in str(raised.value)
    assert repr(source) in str(raised.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(value=JSON)
def test_a_field_path_reads_back_any_json_value(value: object) -> None:
    path = compile_expression("event.data.value", variables=EVENT, what="key")
    assert path.evaluate({"event": {"data": {"value": value}}}) == value


@given(left=JSON, right=JSON)
def test_equality_of_json_values_agrees_with_python(left: object, right: object) -> None:
    equal = compile_expression("event.data.a == async.data.b", variables=WAIT, what="if_")
    try:
        result = equal.evaluate({"event": {"data": {"a": left}}, "async": {"data": {"b": right}}})
    except ExpressionError:
        return  # CEL refuses to compare values of different types: a clear error, not a guess
    assert result == (left == right)
