"""The OpenAPI 3.1 document of the HTTP API, generated from the routes and the protos' comments.

What each route accepts and answers comes from the same declarations the
transcoder compiles (google.api.http rules, field behaviors, reverb.v1
options); descriptions are the proto comments, read from the descriptor set
`make gen` writes with source info (`reverb_contracts/v1/contracts.binpb`).
The errors a route can give are its own (`HttpRoute.errors`) and the
transcoder's (a bad parameter or body), authentication's and the database's,
with their HTTP statuses from `errors.STATUSES`. Each operation names the API
key scope its RPC declares (`(reverb.v1.scope)`) in its `security` requirement
and in `x-reverb-scope`.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, OneofDescriptor

from reverb_contracts.v1 import options_pb2
from reverb_ingress_gateway import json_limits
from reverb_ingress_gateway.errors import BY_CODE, STATUSES, status_of
from reverb_ingress_gateway.wire.json_in import MAX_TIMESTAMP_MILLISECONDS
from reverb_ingress_gateway.wire.options import (
    enum_names,
    http_field,
    http_name,
    http_route,
    is_message,
    is_timestamp,
    message_of,
    required,
)
from reverb_ingress_gateway.wire.routes import INGRESS, Route

Schema = dict[str, Any]

_TIME: Schema = {"type": "string", "format": "date-time"}
# Text in a path or query: PostgreSQL text cannot hold NUL, so no id, name or cursor does.
_NO_NUL = "^[^\\u0000]*$"
_JSON_LIMITS = (
    f"Arrays and objects nest at most {json_limits.MAX_DEPTH} levels; integers fit in 64 bits"
    " (-2^63 to 2^64-1): a larger one is refused, not rounded (send it as a string)."
)
# Every RPC route takes the caller's W3C trace context.
_TRACEPARENT: Schema = {
    "name": "traceparent",
    "in": "header",
    "required": False,
    "description": "A W3C trace context: the request's spans join the caller's trace.",
    "schema": {"type": "string"},
}
# What every protected route can end with besides its own errors.
_ALWAYS = ("unauthenticated", "permission_denied", "internal", "unavailable")
# What the HTTP edge (http/guard.py, http/connections.py) can answer any request with.
_EDGE = (
    "cross_site",
    "foreign_host",
    "request_timeout",
    "uri_too_long",
    "headers_too_large",
    "too_many_parameters",
)
# What reading a body can end with (http/body.py), besides the route's body error.
_BODY = ("invalid_json", "invalid_argument", "payload_too_large", "unsupported_media_type")


@dataclass(frozen=True, slots=True)
class PlainRoute:
    """A GET route that is not an RPC (no API key needed), as the document shows it."""

    path: str
    summary: str
    schema: Schema
    statuses: tuple[int, ...] = ()


# What a raw-body (webhook) route can end with besides its own errors.
_RAW = ("internal", "unavailable", "not_found", "payload_too_large", "invalid_argument")


@dataclass(frozen=True, slots=True)
class RawRoute:
    """A webhook route (http/webhooks.py): a POST whose body is taken as raw bytes."""

    path: str
    summary: str
    description: str
    # The API key scope it needs; None: the request's signature authenticates it.
    scope: str | None
    # Path parameters, by name: their description.
    parameters: tuple[tuple[str, str], ...] = ()


def webhook_routes(max_body_bytes: int) -> list[RawRoute]:
    limit = f"The body is taken as it is (any media type, at most {max_body_bytes} bytes)."
    answer = (
        " Answers 202 with the id of the event the delivery became (the first delivery's"
        " id again when the provider redelivers a delivery id seen before); Slack's"
        " url_verification request is answered 200 with its challenge."
    )
    return [
        RawRoute(
            "/webhooks/{source}",
            "Receive a webhook from a configured source.",
            f"{limit} It is verified, byte for byte, with the source's preset and secret"
            " (REVERB_WEBHOOKS__<SOURCE>__PRESET, …__SECRET) before anything is parsed: a bad,"
            " missing or stale signature is 401 and nothing is stored; an unknown source is"
            f" 404. Needs no API key (a source configured `open` is not verified).{answer}",
            None,
            (("source", "The source's name, lower case (as configured)."),),
        ),
        RawRoute(
            "/webhooks",
            "Receive a webhook for the source `default`.",
            f"{limit} Needs an API key with the `ingest` scope (and, if"
            f" REVERB_WEBHOOKS__DEFAULT__PRESET is set, that preset's signature).{answer}",
            "ingest",
        ),
    ]


def _raw(route: RawRoute) -> Schema:
    ids = {
        "type": "object",
        "required": ["ids"],
        "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
    }
    challenge = {
        "type": "object",
        "required": ["challenge"],
        "properties": {"challenge": {"type": "string"}},
    }
    codes = [*_RAW, *_EDGE]
    operation: Schema = {"summary": route.summary, "description": route.description}
    if route.scope is None:
        operation["security"] = []
        codes.append("unauthenticated")
    else:
        operation["security"] = [{"apiKey": [route.scope]}]
        operation["x-reverb-scope"] = route.scope
        codes += _ALWAYS
    parameters: list[Schema] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": description,
            "schema": {"type": "string", "pattern": _NO_NUL},
        }
        for name, description in route.parameters
    ]
    operation["parameters"] = [*parameters, _TRACEPARENT]
    operation["requestBody"] = {
        "required": False,
        "content": {
            "application/json": {"schema": {}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    operation["responses"] = {
        **_ok(200, "Slack's url_verification challenge.", challenge),
        **_ok(202, "The id of the event the delivery became.", ids),
        **_error_responses(codes),
    }
    return {"post": operation}


def _comments() -> dict[str, str]:
    """Leading comments by full name (messages, fields, enums, values, services, methods)."""
    data = resources.files("reverb_contracts.v1").joinpath("contracts.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    found: dict[str, str] = {}
    for file in files.file:
        names: dict[tuple[int, ...], str] = {}
        _name_messages(file.message_type, file.package, (4,), names)
        for index, enum in enumerate(file.enum_type):
            _name_enum(enum, file.package, (5, index), names)
        for index, service in enumerate(file.service):
            names[(6, index)] = f"{file.package}.{service.name}"
            for position, method in enumerate(service.method):
                names[(6, index, 2, position)] = f"{file.package}.{service.name}.{method.name}"
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            if name is not None and location.leading_comments:
                found[name] = _paragraphs(location.leading_comments)
    return found


def _paragraphs(comment: str) -> str:
    """A comment's paragraphs, each on one line."""
    paragraphs = comment.strip().split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def _name_messages(
    messages: Iterable[descriptor_pb2.DescriptorProto],
    scope: str,
    path: tuple[int, ...],
    names: dict[tuple[int, ...], str],
) -> None:
    for index, message in enumerate(messages):
        full = f"{scope}.{message.name}"
        names[(*path, index)] = full
        for position, field in enumerate(message.field):
            names[(*path, index, 2, position)] = f"{full}.{field.name}"
        _name_messages(message.nested_type, full, (*path, index, 3), names)
        for position, enum in enumerate(message.enum_type):
            _name_enum(enum, full, (*path, index, 4, position), names)


def _name_enum(
    enum: descriptor_pb2.EnumDescriptorProto,
    scope: str,
    path: tuple[int, ...],
    names: dict[tuple[int, ...], str],
) -> None:
    names[path] = f"{scope}.{enum.name}"


class _Schemas:
    """Component schemas, built as routes refer to them: a message's JSON as a response
    renders it, or (`reading`) as a body is read."""

    def __init__(self, comments: dict[str, str]) -> None:
        self.comments = comments
        self.components: dict[str, Schema] = {}
        self._names: dict[tuple[str, bool], str] = {}

    def ref(self, message: Descriptor, *, reading: bool) -> Schema:
        key = (message.full_name, reading)
        name = self._names.get(key)
        if name is None:
            name = message.name
            if name in self.components or (message.full_name, not reading) in self._names:
                name += "Input" if reading else "Output"
            self._names[key] = name
            self.components[name] = {}
            self.components[name] = self._message(message, reading)
        return {"$ref": f"#/components/schemas/{name}"}

    def _message(self, message: Descriptor, reading: bool) -> Schema:
        properties, needed, variants = self.parts(message, reading)
        schema: Schema = {"type": "object"}
        description = self.comments.get(message.full_name)
        if description:
            schema["description"] = description
        schema["properties"] = properties
        if needed:
            schema["required"] = needed
        if variants:
            schema["oneOf"] = variants
        return schema

    def parts(
        self, message: Descriptor, reading: bool
    ) -> tuple[dict[str, Schema], list[str], list[Schema]]:
        """A message's properties, the keys always present (or, read, required), and the
        variants of its oneof (each with its own properties)."""
        properties: dict[str, Schema] = {}
        needed: list[str] = []
        variants: list[Schema] = []
        seen: set[str] = set()
        for field in message.fields:
            oneof = field.containing_oneof
            if oneof is not None and not _synthetic(oneof):
                if oneof.name not in seen:
                    seen.add(oneof.name)
                    variants += self._variants(oneof, reading)
                continue
            self._add(field, reading, properties, needed)
        return properties, needed, variants

    def _variants(self, oneof: OneofDescriptor, reading: bool) -> list[Schema]:
        """One schema per member; each refuses the keys of the others, so that exactly one
        matches (a oneof renders only the member that is set)."""
        shapes: list[tuple[dict[str, Schema], list[str]]] = []
        for member in oneof.fields:
            properties: dict[str, Schema] = {}
            needed: list[str] = []
            self._add(member, reading, properties, needed, always=True)
            shapes.append((properties, needed))
        variants = []
        for properties, needed in shapes:
            others = [key for shape, _ in shapes if shape is not properties for key in shape]
            variant: Schema = {"type": "object", "properties": properties, "required": needed}
            if others:
                variant["not"] = {"anyOf": [{"required": [key]} for key in others]}
            variants.append(variant)
        return variants

    def _add(
        self,
        field: FieldDescriptor,
        reading: bool,
        properties: dict[str, Schema],
        needed: list[str],
        *,
        always: bool = False,
    ) -> None:
        options = http_field(field)
        if options.inline and not reading:
            inner, inner_needed, variants = self.parts(message_of(field), reading)
            properties.update(inner)
            needed += inner_needed
            if variants:
                raise TypeError(f"{field.full_name}: an inline message with a oneof")
            return
        key = http_name(field)
        properties[key] = self.field(field, reading, present=always)
        if (required(field) if reading else not options.detail) or always:
            needed.append(key)

    def field(
        self, field: FieldDescriptor, reading: bool, *, item: bool = False, present: bool = False
    ) -> Schema:
        """The schema of a field's value (of one item, with `item`; `present`: a oneof's
        member, never null where it appears)."""
        description = self.comments.get(field.full_name)
        if field.is_repeated and not item:
            schema: Schema = {"type": "array", "items": self.field(field, reading, item=True)}
        else:
            nullable = not item and not present and not required(field)
            schema = self._value(field, reading, nullable=nullable)
        if reading and http_field(field).json:
            description = f"{description or 'JSON'} {_JSON_LIMITS}".strip()
        if description and not item:
            schema = {**schema, "description": description}
        return schema

    def _value(self, field: FieldDescriptor, reading: bool, *, nullable: bool) -> Schema:
        options = http_field(field)
        if is_timestamp(field):
            if reading:
                millis = {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_TIMESTAMP_MILLISECONDS,
                    "description": "Unix milliseconds",
                }
                return {"oneOf": [_TIME, millis]}
            return {**_TIME, "type": ["string", "null"]} if nullable else dict(_TIME)
        if is_message(field):
            ref = self.ref(message_of(field), reading=reading)
            return {"anyOf": [ref, {"type": "null"}]} if nullable and not reading else ref
        kind = field.type
        if kind == FieldDescriptor.TYPE_BYTES:
            if options.json == options_pb2.JSON_DOCUMENT_OBJECT:
                return {"type": "object"}
            return {}  # any JSON value
        if kind == FieldDescriptor.TYPE_ENUM:
            names = [name for number, name in enum_names(field).items() if number != 0]
            return {"type": "string", "enum": names}
        schema: Schema = {"type": _JSON_TYPES.get(field.cpp_type, "string")}
        if schema["type"] == "integer":
            if options.HasField("minimum"):
                schema["minimum"] = options.minimum
            if options.HasField("maximum"):
                schema["maximum"] = options.maximum
        if kind == FieldDescriptor.TYPE_STRING and (options.non_empty or required(field)):
            schema["minLength"] = 1
        if field.has_presence and not reading and nullable:
            schema["type"] = [schema["type"], "null"]
        return schema


_JSON_TYPES = {
    FieldDescriptor.CPPTYPE_INT32: "integer",
    FieldDescriptor.CPPTYPE_INT64: "integer",
    FieldDescriptor.CPPTYPE_UINT32: "integer",
    FieldDescriptor.CPPTYPE_UINT64: "integer",
    FieldDescriptor.CPPTYPE_BOOL: "boolean",
    FieldDescriptor.CPPTYPE_DOUBLE: "number",
    FieldDescriptor.CPPTYPE_FLOAT: "number",
}


def _synthetic(oneof: OneofDescriptor) -> bool:
    return len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"


def _error_responses(codes: Iterable[str]) -> dict[str, Schema]:
    """One response per HTTP status, naming the error codes it stands for."""
    by_status: dict[int, list[str]] = {}
    for code in sorted(set(codes)):
        by_status.setdefault(status_of(BY_CODE[code]).http, []).append(code)
    return {
        str(status): {
            "description": f"{HTTPStatus(status).phrase}: {', '.join(found)}.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, found in sorted(by_status.items())
    }


def _ok(status: int, description: str, schema: Schema) -> dict[str, Schema]:
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _split(comment: str) -> tuple[str, str]:
    """A comment's first paragraph (the summary) and the rest."""
    summary, _, rest = comment.partition("\n\n")
    return " ".join(summary.split()), rest.strip()


def _operation(route: Route, schemas: _Schemas) -> Schema:
    summary, description = _split(schemas.comments.get(route.rpc.full_name, route.rpc.name))
    options = http_route(route.rpc)
    operation: Schema = {"operationId": route.rpc.name, "summary": summary}
    needs = f"Needs an API key with the `{route.scope}` scope."
    operation["description"] = f"{description}\n\n{needs}" if description else needs
    operation["security"] = [{"apiKey": [route.scope]}]
    operation["x-reverb-scope"] = route.scope
    parameters = [_parameter(field, "path", schemas) for field in route.path_fields] + [
        _parameter(field, "query", schemas) for field in route.query_fields
    ]
    operation["parameters"] = [*parameters, _TRACEPARENT]
    codes = [*_ALWAYS, *_EDGE, *options.errors]
    if parameters:
        codes.append("invalid_argument")
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _body(route, schemas)}},
        }
        codes += [*_BODY, options.body_error or "invalid_argument"]
    output = route.rpc.output_type
    answered = schemas.comments.get(output.full_name) or HTTPStatus(route.status).phrase
    operation["responses"] = {
        **_ok(route.status, answered, schemas.ref(output, reading=False)),
        **_error_responses(codes),
    }
    return operation


def _parameter(field: FieldDescriptor, where: str, schemas: _Schemas) -> Schema:
    schema = schemas.field(field, reading=True)
    description = schema.pop("description", None)
    if schema.get("type") == "string" and "enum" not in schema:
        schema["pattern"] = _NO_NUL
    parameter: Schema = {"name": http_name(field), "in": where, "required": where == "path"}
    if description:
        parameter["description"] = description
    parameter["schema"] = schema
    return parameter


def _body(route: Route, schemas: _Schemas) -> Schema:
    request = route.rpc.input_type
    if route.body == "*":
        if not route.path_fields:
            return schemas.ref(request, reading=True)
        # The fields the path binds are not read from the body.
        properties, needed, _ = schemas.parts(request, reading=True)
        for bound in route.path_fields:
            properties.pop(http_name(bound), None)
        kept = [key for key in needed if key in properties]
        return {"type": "object", "properties": properties, "required": kept}
    field = request.fields_by_name[route.body or ""]
    items = {"type": "array", "items": schemas.ref(message_of(field), reading=True)}
    if http_route(route.rpc).single_item:
        return {"oneOf": [schemas.ref(message_of(field), reading=True), items]}
    return items


def _plain(route: PlainRoute) -> Schema:
    responses = _ok(200, HTTPStatus(200).phrase, route.schema)
    codes = [STATUSES[error].code for error in STATUSES if STATUSES[error].http in route.statuses]
    return {
        "get": {
            "summary": route.summary,
            "security": [],
            "responses": {**responses, **_error_responses(codes)},
        }
    }


def _error_schema() -> Schema:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": [row.code for row in STATUSES.values()]},
                    "message": {"type": "string"},
                },
            }
        },
    }


def document(
    routes: Sequence[Route], plain: Sequence[PlainRoute], raw: Sequence[RawRoute] = ()
) -> Schema:
    """The OpenAPI 3.1 document of these routes."""
    schemas = _Schemas(_comments())
    paths: dict[str, Schema] = {}
    for route in routes:
        paths.setdefault(route.template, {})[route.method.lower()] = _operation(route, schemas)
    for extra in plain:
        paths[extra.path] = _plain(extra)
    for webhook in raw:
        paths.setdefault(webhook.path, {}).update(_raw(webhook))
    summary, description = _split(schemas.comments.get(INGRESS.full_name, ""))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Reverb",
            "version": "1",
            "description": f"Reverb's HTTP API. {summary} {description}".strip(),
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (rvb_…); not needed in dev mode. Each"
                    " operation names the scope the key must hold (ingest, read, operate,"
                    " admin); a key without it gets 403 permission_denied.",
                }
            },
            "schemas": {"Error": _error_schema(), **schemas.components},
        },
    }
