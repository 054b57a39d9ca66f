"""The transcoder's converters, compiled from the reverb.v1 descriptors: JSON onto messages and
messages back to the HTTP API's JSON."""

from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from reverb_contracts.v1 import common_pb2, function_host_pb2, ingress_pb2
from reverb_ingress_gateway.wire import json_in, json_out


def _event(document: dict[str, object]) -> function_host_pb2.EventInput:
    message = function_host_pb2.EventInput()
    json_in.reader(function_host_pb2.EventInput.DESCRIPTOR, {}).fill(message, document)
    return message


def _render(message: Message) -> Any:
    """The message's JSON, as a client reads it."""
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    render = json_out.renderer(descriptor, {})
    return orjson.loads(orjson.dumps(render(message)))


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-05-01T10:00:00+02:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        (1700000000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ],
)
def test_a_time_is_iso_8601_or_unix_milliseconds(ts: object, expected: datetime) -> None:
    event = _event({"name": "a", "ts": ts})
    assert event.ts.ToDatetime(tzinfo=UTC) == expected


def test_json_bytes_are_read_as_json_and_unset_values_stay_unset() -> None:
    event = _event({"name": "a", "data": {"n": [1, {"m": None}]}, "id": None})
    assert orjson.loads(event.data) == {"n": [1, {"m": None}]}
    assert (event.id, event.HasField("ts")) == ("", False)


def test_a_misfit_names_where_it_is() -> None:
    with pytest.raises(json_in.Misfit) as raised:
        _event({"name": "a", "data": [1]})
    assert raised.value.within("events", "[3]").describe() == "events[3].data must be an object"


def test_a_run_renders_with_names_times_nulls_and_inline_json() -> None:
    run = ingress_pb2.Run(
        id="r1",
        status=ingress_pb2.RUN_STATUS_SLEEPING,
        output=b'{"a": [1, 2]}',
        steps=[ingress_pb2.Step(id="s1", kind=ingress_pb2.STEP_KIND_SEND_EVENT)],
    )
    run.created_at.FromDatetime(datetime(2025, 3, 1, 12, 0, 0, 5, tzinfo=UTC))
    document = _render(ingress_pb2.GetRunResponse(run=run))
    assert document["status"] == "sleeping"
    assert document["created_at"] == "2025-03-01T12:00:00.000005Z"
    assert document["output"] == {"a": [1, 2]}
    assert (document["started_at"], document["parent_run_id"], document["error"]) == (None,) * 3
    [step] = document["steps"]
    assert (step["kind"], step["status"], step["output"]) == ("send_event", "unspecified", None)


def test_a_detail_field_is_left_out_of_list_items() -> None:
    run = ingress_pb2.Run(id="r1", steps=[ingress_pb2.Step(id="s1")])
    assert "steps" in _render(ingress_pb2.GetRunResponse(run=run))
    [listed] = _render(ingress_pb2.ListRunsResponse(runs=[run]))["runs"]
    assert "steps" not in listed


def test_a_oneof_shows_only_its_member_and_inline_fields_join_the_parent() -> None:
    function = common_pb2.FunctionDefinition(
        id="f",
        triggers=[
            common_pb2.Trigger(event="user.signed_up"),
            common_pb2.Trigger(cron=common_pb2.CronTrigger(expression="0 9 * * *")),
            common_pb2.Trigger(cron=common_pb2.CronTrigger(expression="* * * * *", timezone="UTC")),
        ],
    )
    document = _render(ingress_pb2.FunctionInfo(app_id="shop", definition=function))
    unset = {
        "overlap": "unspecified",
        "catch_up": "unspecified",
        "catch_up_window_seconds": 0.0,
        "jitter_seconds": 0.0,
        "next_at": None,
        "last_at": None,
        "missed": 0,
        "skipped": 0,
    }
    assert document["triggers"] == [
        {"event": "user.signed_up"},
        {"cron": "0 9 * * *", "timezone": None, **unset},
        {"cron": "* * * * *", "timezone": "UTC", **unset},
    ]
    assert (document["id"], document["app_id"]) == ("f", "shop")


def test_bytes_not_marked_json_are_refused_when_compiled() -> None:
    with pytest.raises(TypeError, match=r"reverb\.v1\.Ack\.output: bytes over HTTP"):
        json_out.renderer(function_host_pb2.Ack.DESCRIPTOR, {})
    with pytest.raises(TypeError, match=r"reverb\.v1\.Ack\.output: bytes over HTTP"):
        json_in.reader(function_host_pb2.Ack.DESCRIPTOR, {})


def test_a_body_reader_leaves_the_path_bound_fields_to_the_path() -> None:
    request = ingress_pb2.GetRunRequest()
    read = json_in.reader(ingress_pb2.GetRunRequest.DESCRIPTOR, {}, skip=frozenset({"id"}))
    read.fill(request, {"run_id": "from-the-body"})
    assert request.id == ""
    with pytest.raises(json_in.Misfit, match="is required"):
        json_in.reader(ingress_pb2.GetRunRequest.DESCRIPTOR, {}).fill(request, {})
