"""Bad input is a 400 (gRPC INVALID_ARGUMENT) with a JSON error, never a 500: NUL characters,
times an offset pushes out of range, data nested too deeply, integers beyond 64 bits. Each case
is sent over HTTP and over gRPC, to a real gateway on a real PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from reverb_contracts.v1 import function_host_pb2, ingress_pb2, ingress_pb2_grpc
from reverb_ingress_gateway import Gateway
from reverb_ingress_gateway.json_limits import MAX_DEPTH

_YEAR_1 = -62135596800  # 0001-01-01T00:00:00Z in Unix seconds
_YEAR_10000 = 253402300800  # 10000-01-01T00:00:00Z


def _cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


def _nested(levels: int) -> bytes:
    """A JSON object nested `levels` deep (itself counting as one)."""
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def _event_body(data: bytes) -> bytes:
    return b'{"name": "a", "data": ' + data + b"}"


async def _post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post("/events", content=body, headers={"content-type": "application/json"})


_RUN_CURSOR_WITH_NUL = _cursor("run", "a\x00")
_EVENT_CURSOR_WITH_NUL = _cursor("event", "2026-01-01T00:00:00+00:00", "\x00")
_EVENT_CURSOR_YEAR_1 = _cursor("event", "0001-01-01T00:00:00+14:00", "x")
_EVENT_CURSOR_YEAR_9999 = _cursor("event", "9999-12-31T23:00:00-14:00", "x")


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


@pytest.fixture
async def ingress(gateway: Gateway) -> AsyncIterator[ingress_pb2_grpc.IngressAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        yield ingress_pb2_grpc.IngressStub(channel)


@dataclass(frozen=True)
class Read:
    """A GET over HTTP, and the same call over gRPC."""

    path: str
    method: str
    request: object


_READS = {
    "nul in ?function=": Read(
        "/runs?function=%00", "ListRuns", ingress_pb2.ListRunsRequest(function_id="\x00")
    ),
    "nul in ?event=": Read(
        "/runs?event=a%00", "ListRuns", ingress_pb2.ListRunsRequest(event_id="a\x00")
    ),
    "nul in ?name=": Read(
        "/events?name=%00", "ListEvents", ingress_pb2.ListEventsRequest(name="\x00")
    ),
    "nul in /events/{id}": Read("/events/%00", "GetEvent", ingress_pb2.GetEventRequest(id="\x00")),
    "nul in /runs/{id}": Read("/runs/%00", "GetRun", ingress_pb2.GetRunRequest(id="\x00")),
    "nul in a runs cursor": Read(
        f"/runs?cursor={_RUN_CURSOR_WITH_NUL}",
        "ListRuns",
        ingress_pb2.ListRunsRequest(page_token=_RUN_CURSOR_WITH_NUL),
    ),
    "nul in an events cursor": Read(
        f"/events?cursor={_EVENT_CURSOR_WITH_NUL}",
        "ListEvents",
        ingress_pb2.ListEventsRequest(page_token=_EVENT_CURSOR_WITH_NUL),
    ),
    "a nul as the cursor": Read(
        "/events?cursor=%00", "ListEvents", ingress_pb2.ListEventsRequest(page_token="\x00")
    ),
    "an events cursor dated year 1 at +14:00": Read(
        f"/events?cursor={_EVENT_CURSOR_YEAR_1}",
        "ListEvents",
        ingress_pb2.ListEventsRequest(page_token=_EVENT_CURSOR_YEAR_1),
    ),
    "an events cursor dated 9999-12-31 at -14:00": Read(
        f"/events?cursor={_EVENT_CURSOR_YEAR_9999}",
        "ListEvents",
        ingress_pb2.ListEventsRequest(page_token=_EVENT_CURSOR_YEAR_9999),
    ),
}


@pytest.mark.parametrize("case", list(_READS), ids=list(_READS))
async def test_a_bad_read_is_a_400_over_http(client: httpx.AsyncClient, case: str) -> None:
    response = await client.get(_READS[case].path)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_argument"


@pytest.mark.parametrize("case", list(_READS), ids=list(_READS))
async def test_a_bad_read_is_invalid_argument_over_grpc(
    ingress: ingress_pb2_grpc.IngressAsyncStub, case: str
) -> None:
    read = _READS[case]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(ingress, read.method)(read.request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Send:
    """An event's JSON body over HTTP, the same event over gRPC, and the error code."""

    body: bytes
    event: function_host_pb2.EventInput
    code: str


def _grpc_event(data: bytes = b"", seconds: int | None = None) -> function_host_pb2.EventInput:
    event = function_host_pb2.EventInput(name="a", data=data)
    if seconds is not None:
        event.ts.CopyFrom(Timestamp(seconds=seconds))
    return event


_TOO_BIG = b'{"n": 12345678901234567890123}'
_TOO_SMALL = b'{"n": [1, -9223372036854775809]}'

_SENDS = {
    "ts pushed before year 1 by its offset": Send(
        b'{"name": "a", "ts": "0001-01-01T00:00:00+01:00"}',
        _grpc_event(seconds=_YEAR_1 - 3600),
        "invalid_event",
    ),
    "ts pushed past year 9999 by its offset": Send(
        b'{"name": "a", "ts": "9999-12-31T23:00:00-01:00"}',
        _grpc_event(seconds=_YEAR_10000),
        "invalid_event",
    ),
    "data nested one level too deep": Send(
        _event_body(_nested(MAX_DEPTH + 1)), _grpc_event(_nested(MAX_DEPTH + 1)), "invalid_event"
    ),
    "data nested 254 levels": Send(
        _event_body(_nested(254)), _grpc_event(_nested(254)), "invalid_event"
    ),
    "data nested 1,000 levels": Send(
        _event_body(_nested(1000)), _grpc_event(_nested(1000)), "invalid_event"
    ),
    "an integer beyond 2^64-1": Send(
        _event_body(_TOO_BIG), _grpc_event(_TOO_BIG), "invalid_argument"
    ),
    "an integer below -2^63": Send(
        _event_body(_TOO_SMALL), _grpc_event(_TOO_SMALL), "invalid_argument"
    ),
}


@pytest.mark.parametrize("case", list(_SENDS), ids=list(_SENDS))
async def test_a_bad_event_is_a_400_over_http(client: httpx.AsyncClient, case: str) -> None:
    response = await _post(client, _SENDS[case].body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == _SENDS[case].code


@pytest.mark.parametrize("case", list(_SENDS), ids=list(_SENDS))
async def test_a_bad_event_is_invalid_argument_over_grpc(
    ingress: ingress_pb2_grpc.IngressAsyncStub, case: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingress.SendEvents(ingress_pb2.SendEventsRequest(events=[_SENDS[case].event]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_message_names_the_limits(client: httpx.AsyncClient) -> None:
    deep = await _post(client, _event_body(_nested(MAX_DEPTH + 1)))
    assert f"at most {MAX_DEPTH} levels" in deep.json()["error"]["message"]
    big = await _post(client, _event_body(_TOO_BIG))
    message = big.json()["error"]["message"]
    assert "12345678901234567890123" in message and "64 bits" in message


_KEPT = {
    "nested exactly to the limit": _nested(MAX_DEPTH),
    "the largest 64-bit integers": b'{"u": 18446744073709551615, "i": -9223372036854775808}',
    "long digits in strings, fractions and exponents": (
        b'{"s": "12345678901234567890123", "f": 0.12345678901234567890123, "e": 1.5e3,'
        b' "x": "\\"12345678901234567890123"}'
    ),
    "many shallow objects": b'{"items": [' + b",".join([b'{"a": [1]}'] * 500) + b"]}",
}


@pytest.mark.parametrize("case", list(_KEPT), ids=list(_KEPT))
async def test_data_within_the_limits_is_kept_exactly(
    client: httpx.AsyncClient, ingress: ingress_pb2_grpc.IngressAsyncStub, case: str
) -> None:
    data = _KEPT[case]
    response = await _post(client, _event_body(data))
    assert response.status_code == 202, response.text
    sent = await ingress.SendEvents(ingress_pb2.SendEventsRequest(events=[_grpc_event(data)]))
    for event_id in [*response.json()["ids"], *sent.ids]:
        stored = (await client.get(f"/events/{event_id}")).json()["data"]
        assert stored == orjson.loads(data)


async def test_a_time_before_year_1000_has_a_four_digit_year(client: httpx.AsyncClient) -> None:
    response = await client.post("/events", json={"name": "a", "ts": "0037-10-05T12:00:00+01:00"})
    event_id = response.json()["ids"][0]
    stored = (await client.get(f"/events/{event_id}")).json()
    assert stored["ts"] == "0037-10-05T11:00:00.000000Z"
    listed = (await client.get("/events")).json()["events"]
    assert listed[0]["ts"] == "0037-10-05T11:00:00.000000Z"
