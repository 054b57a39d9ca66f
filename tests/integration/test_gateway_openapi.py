"""The OpenAPI document, generated from the route declarations: valid, and complete."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jsonschema_rs
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route

from reverb_ingress_gateway import GatewaySettings
from reverb_ingress_gateway.health import Health
from reverb_ingress_gateway.http.app import build_app
from reverb_ingress_gateway.servicer import IngressService


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Starlette]:
    settings = GatewaySettings(database_url=database_url, dev=True)
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2)
    yield build_app(IngressService(pool, settings), None, settings, Health(pool, settings))
    await pool.close()


@pytest.fixture
async def document(app: Starlette) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    return document["components"]["schemas"][name]  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_it_lists_every_route_the_app_serves(app: Starlette, document: dict[str, Any]) -> None:
    served = {
        (route.path.replace(":path}", "}"), method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert served == documented
    assert ("/events/{event_id}", "get") in served


def test_every_operation_documents_its_errors(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = set(operation["responses"])
            if operation.get("security") == []:
                continue
            assert {"401", "500", "503"} <= responses, (path, method)
            parameters = [where["in"] for where in operation.get("parameters", [])]
            if {"path", "query"} & set(parameters) or "requestBody" in operation:
                assert "400" in responses, (path, method)
    events = document["paths"]["/events"]["post"]["responses"]
    assert {"202", "400", "413", "415"} <= set(events)
    assert "invalid_event" in events["400"]["description"]
    assert "404" in document["paths"]["/runs/{run_id}"]["get"]["responses"]
    health = document["paths"]["/healthz"]["get"]
    assert (health["security"], set(health["responses"])) == ([], {"200", "503"})


def test_it_keeps_enums_nullable_times_and_non_empty_ids(document: dict[str, Any]) -> None:
    run = _schema(document, "Run")["properties"]
    assert "cancelled" in run["status"]["enum"] and "unspecified" not in run["status"]["enum"]
    assert run["ended_at"]["type"] == ["string", "null"]
    assert run["created_at"]["type"] == "string"
    assert "send_event" in _schema(document, "Step")["properties"]["kind"]["enum"]
    runs = document["paths"]["/runs"]["get"]["parameters"]
    status = next(parameter for parameter in runs if parameter["name"] == "status")
    assert "failed" in status["schema"]["items"]["enum"]
    limit = next(parameter for parameter in runs if parameter["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)
    [path_id, _] = document["paths"]["/runs/{run_id}"]["get"]["parameters"]
    assert (path_id["required"], path_id["schema"]["minLength"]) == (True, 1)
    event = _schema(document, "EventInput")
    assert event["required"] == ["name"]
    assert event["properties"]["id"]["minLength"] == 1
    error = _schema(document, "Error")["properties"]["error"]
    assert error["required"] == ["code", "message"]


def test_a_trigger_is_one_of_two_unambiguous_shapes(document: dict[str, Any]) -> None:
    trigger = _schema(document, "Trigger")
    shapes = [sorted(variant["required"]) for variant in trigger["oneOf"]]
    cron_keys = sorted(
        ["cron", "timezone", "overlap", "catch_up", "catch_up_window_seconds", "jitter_seconds"]
        + ["next_at", "last_at", "missed", "skipped"]
    )
    assert shapes == [["event"], cron_keys]
    event, cron = trigger["oneOf"]
    assert event["properties"]["event"]["type"] == "string"
    # Each shape refuses the other's keys: exactly one matches, even a mixed object fails.
    assert sorted(item["required"][0] for item in event["not"]["anyOf"]) == cron_keys
    assert cron["not"] == {"anyOf": [{"required": ["event"]}]}
    listed = {
        "cron": "* * * * *",
        "timezone": "UTC",
        "overlap": "buffer_one",
        "catch_up": "all",
        "catch_up_window_seconds": 3600.0,
        "jitter_seconds": 0.0,
        "next_at": "2030-01-07T09:00:00.000000Z",
        "last_at": None,
        "missed": 0,
        "skipped": 2,
    }
    validator = jsonschema_rs.validator_for(trigger)  # (schemathesis's validator)
    assert not validator.is_valid({"event": "a", **listed})
    assert validator.is_valid({"event": "a"})
    assert validator.is_valid(listed)


def test_text_parameters_refuse_nul_and_every_route_takes_a_traceparent(
    document: dict[str, Any],
) -> None:
    for operations in document["paths"].values():
        for operation in operations.values():
            if operation.get("security") == []:
                continue
            names = [parameter["name"] for parameter in operation["parameters"]]
            assert "traceparent" in names
            for parameter in operation["parameters"]:
                schema = parameter["schema"]
                if parameter["in"] != "header" and schema.get("type") == "string":
                    assert schema["pattern"] == "^[^\\u0000]*$", parameter
    event = _schema(document, "EventInput")["properties"]
    assert "at most 128 levels" in event["data"]["description"]
    assert "64 bits" in event["data"]["description"]
    millis = event["ts"]["oneOf"][1]
    assert millis["maximum"] == 253402300799999  # 9999-12-31T23:59:59.999Z
    assert _schema(document, "Step")["properties"]["child_run_id"]["type"] == ["string", "null"]


def test_every_operation_names_its_scope_and_the_403(document: dict[str, Any]) -> None:
    scopes = {
        (path, method): operation["x-reverb-scope"]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") != []
    }
    assert scopes[("/events", "post")] == "ingest"
    assert scopes[("/runs", "get")] == "read"
    assert scopes[("/functions/{id}/schedule/trigger", "post")] == "operate"
    assert scopes[("/functions/{id}/schedule/backfill", "post")] == "operate"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation.get("security") == []:
                continue  # public: /healthz, /openapi.json
            scope = operation["x-reverb-scope"]
            assert operation["security"] == [{"apiKey": [scope]}], (path, method)
            assert f"`{scope}` scope" in operation["description"]
            assert "permission_denied" in operation["responses"]["403"]["description"]


def test_every_operation_documents_the_http_edge_refusals(document: dict[str, Any]) -> None:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if "x-reverb-scope" not in operation:
                continue
            statuses = set(operation["responses"])
            assert {"400", "403", "408", "414", "421", "431"} <= statuses, (path, method)
