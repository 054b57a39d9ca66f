"""The OpenAPI 3.1 document of the HTTP API, served at /openapi.json."""

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """References to the shared error responses: these, and those any route may give."""
    return {
        str(status): {"$ref": f"#/components/responses/E{status}"}
        for status in sorted({*statuses, 401, 500, 503})
    }


def _parameter(name: str, where: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


_LIMIT = _parameter(
    "limit", "query", "Page size (default 50).", type="integer", minimum=1, maximum=500
)
_CURSOR = _parameter("cursor", "query", "The next_cursor of the previous page.")
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_ERROR_CODES = [
    "invalid_json",
    "invalid_event",
    "too_many_events",
    "invalid_argument",
    "unauthenticated",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "unsupported_media_type",
    "unavailable",
    "internal",
]

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": _ERROR_CODES},
                    "message": {"type": "string"},
                },
            }
        },
    },
    "EventInput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "data": {
                "type": "object",
                "description": "Defaults to {}. By default at most 512 KiB of JSON.",
            },
            "id": {"type": "string", "description": "Idempotency id: accepted once."},
            "ts": {
                "oneOf": [_TIME, {"type": "integer", "description": "Unix milliseconds"}],
                "description": "When the event happened; defaults to now.",
            },
        },
    },
    "Event": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "data": {"type": "object"},
            "ts": _TIME,
            "received_at": _TIME,
        },
    },
    "ErrorInfo": {
        "type": ["object", "null"],
        "properties": {
            "type": {"type": "string"},
            "message": {"type": "string"},
            "stack": {"type": "string", "description": "Empty in run lists."},
        },
    },
    "Run": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "function_id": {"type": "string"},
            "app_id": {"type": "string"},
            "status": {
                "type": "string",
                "enum": [
                    "queued",
                    "running",
                    "sleeping",
                    "waiting",
                    "completed",
                    "failed",
                    "cancelled",
                ],
            },
            "event_ids": {"type": "array", "items": {"type": "string"}},
            "attempt": {"type": "integer", "description": "0-based attempt of the current try."},
            "invocations": {"type": "integer"},
            "output": {"description": "The function's JSON result once completed."},
            "error": _ref("ErrorInfo"),
            "created_at": _TIME,
            "started_at": _NULLABLE_TIME,
            "ended_at": _NULLABLE_TIME,
            "parent_run_id": {"type": ["string", "null"]},
        },
    },
    "Step": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "kind": {
                "type": "string",
                "enum": ["run", "sleep", "invoke", "send_event", "wait_for_event"],
            },
            "status": {
                "type": "string",
                "enum": ["completed", "failed", "retrying", "sleeping", "waiting"],
            },
            "attempts": {"type": "integer"},
            "started_at": _NULLABLE_TIME,
            "ended_at": _NULLABLE_TIME,
            "output": {"description": "The step's JSON result."},
            "error": _ref("ErrorInfo"),
            "wake_at": _NULLABLE_TIME,
            "child_run_id": {"type": ["string", "null"]},
        },
    },
    "RunWithSteps": {
        "allOf": [
            _ref("Run"),
            {"type": "object", "properties": {"steps": {"type": "array", "items": _ref("Step")}}},
        ]
    },
    "EventWithRuns": {
        "allOf": [
            _ref("Event"),
            {"type": "object", "properties": {"runs": {"type": "array", "items": _ref("Run")}}},
        ]
    },
    "Function": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "app_id": {"type": "string"},
            "retries": {"type": "integer"},
            "triggers": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "object", "properties": {"event": {"type": "string"}}},
                        {
                            "type": "object",
                            "properties": {
                                "cron": {"type": "string"},
                                "timezone": {"type": ["string", "null"]},
                            },
                        },
                    ]
                },
            },
        },
    },
}


def _page(key: str, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            key: {"type": "array", "items": _ref(item)},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Reverb", "version": "1", "description": "Reverb's HTTP API."},
    "security": [{"apiKey": []}],
    "paths": {
        "/events": {
            "post": {
                "summary": "Send one event or a list of them (by default at most 5000).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _ref("EventInput"),
                                    {"type": "array", "items": _ref("EventInput")},
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
                        },
                        "Accepted durably: one id per event, in order.",
                    ),
                    **_errors(400, 413, 415),
                },
            },
            "get": {
                "summary": "List events, newest first.",
                "parameters": [
                    _parameter("name", "query", "Only this event name."),
                    _CURSOR,
                    _LIMIT,
                ],
                "responses": {"200": _json(_page("events", "Event"), "A page."), **_errors(400)},
            },
        },
        "/events/{event_id}": {
            "get": {
                "summary": "An event with the runs it triggered.",
                "parameters": [_parameter("event_id", "path", "The event id.")],
                "responses": {"200": _json(_ref("EventWithRuns"), "The event."), **_errors(404)},
            }
        },
        "/runs": {
            "get": {
                "summary": "List runs, newest first.",
                "parameters": [
                    _parameter("function", "query", "Only runs of this function id."),
                    _parameter(
                        "status",
                        "query",
                        "Only runs in these statuses (repeat it or separate with commas).",
                    ),
                    _parameter("event", "query", "Only runs this event triggered."),
                    _CURSOR,
                    _LIMIT,
                ],
                "responses": {"200": _json(_page("runs", "Run"), "A page."), **_errors(400)},
            }
        },
        "/runs/{run_id}": {
            "get": {
                "summary": "A run with its steps in the order they started.",
                "parameters": [_parameter("run_id", "path", "The run id.")],
                "responses": {"200": _json(_ref("RunWithSteps"), "The run."), **_errors(404)},
            }
        },
        "/functions": {
            "get": {
                "summary": "The registered functions.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "functions": {"type": "array", "items": _ref("Function")}
                            },
                        },
                        "Every function.",
                    ),
                    **_errors(),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Whether the gateway can reach PostgreSQL. Needs no API key.",
                "security": [],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"status": {"const": "ok"}}}, "Healthy."
                    ),
                    "503": {"$ref": "#/components/responses/E503"},
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document. Needs no API key.",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (rvb_…); not needed in dev mode.",
            }
        },
        "schemas": _SCHEMAS,
        "responses": {
            f"E{status}": _json(_ref("Error"), description)
            for status, description in {
                400: "Bad input (invalid_json, invalid_event, too_many_events, invalid_argument).",
                401: "Missing or invalid API key (unauthenticated).",
                404: "No such resource or route (not_found).",
                405: "Method not allowed (method_not_allowed).",
                413: "Body or event over the size limit (payload_too_large).",
                415: "Not a JSON body (unsupported_media_type).",
                500: "Unexpected failure (internal); no details are returned.",
                503: "PostgreSQL is unreachable (unavailable).",
            }.items()
        },
    },
}
