"""The HTTP routes, read from the google.api.http rules of reverb.v1.Ingress.

Every RPC with a rule is a route: its path parameters, query parameters and
body are mapped onto the request message (`json_in`), the servicer's method of
the same name is called in-process, and the response is rendered (`json_out`).
Everything is compiled once, when the app is built; a rule the transcoder
cannot map fails then, not on a request.
"""

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.api import http_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from reverb_contracts.v1 import ingress_pb2, options_pb2
from reverb_ingress_gateway.errors import BY_CODE, GatewayError
from reverb_ingress_gateway.servicer import IngressService
from reverb_ingress_gateway.wire import json_in, json_out, parameters
from reverb_ingress_gateway.wire.ingress import IngressServicer
from reverb_ingress_gateway.wire.options import (
    http_name,
    http_route,
    http_rule,
    is_map,
    message_of,
    required,
    scope,
)

INGRESS = ingress_pb2.DESCRIPTOR.services_by_name["Ingress"]

# {field} or {field=*}: one segment; {field=**}: the rest of the path.
_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)(?:=(\*\*?))?\}")

Answer = Callable[[Mapping[str, str], parameters.Query, Any], Awaitable[json_out.Document]]
# Maps a parsed JSON body onto the request message.
BodyReader = Callable[[Message, Any], None]


@dataclass
class _Compiled:
    """Converters compiled so far, by message type, shared by the routes."""

    readers: dict[str, json_in.Reader] = field(default_factory=dict)
    renderers: dict[tuple[str, bool], json_out.Renderer] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Route:
    """One annotated RPC, ready to answer HTTP requests."""

    method: str  # GET, POST, …
    path: str  # Starlette's form: "/events/{event_id:path}"
    template: str  # OpenAPI's form: "/events/{event_id}"
    rpc: MethodDescriptor
    # The scope an API key needs: the RPC's (reverb.v1.scope) option.
    scope: str
    status: int
    # The request field the body maps to ("*": the whole message); None: no body.
    body: str | None
    # False for a "*" body none of whose fields is REQUIRED: a request without a body
    # reads as `{}` (`POST /runs/{id}/replay` with nothing to say).
    body_required: bool
    path_fields: list[FieldDescriptor] = field(repr=False)
    query_fields: list[FieldDescriptor] = field(repr=False)
    # Called with the path parameters, the query string and the parsed body.
    answer: Answer = field(repr=False)


def _pattern(rule: http_pb2.HttpRule) -> tuple[str, str]:
    if rule.additional_bindings or rule.response_body:
        raise ValueError("additional_bindings and response_body are not mapped")
    for method in ("get", "put", "post", "delete", "patch"):
        pattern = getattr(rule, method)
        if pattern:
            return method.upper(), pattern
    raise ValueError("only get, put, post, delete and patch rules are mapped")


def _paths(pattern: str, request: Descriptor) -> tuple[str, str, list[FieldDescriptor]]:
    """Starlette's path, OpenAPI's path and the fields bound by the path."""
    fields: list[FieldDescriptor] = []

    def variable(match: re.Match[str], starlette: bool) -> str:
        bound = request.fields_by_name.get(match.group(1))
        if bound is None:
            raise ValueError(f"{pattern}: {request.name} has no field {match.group(1)}")
        if starlette:
            fields.append(bound)
        name = http_name(bound)
        if not starlette:
            return f"{{{name}}}"
        return f"{{{name}:path}}" if match.group(2) == "**" else f"{{{name}}}"

    path = _VARIABLE.sub(lambda match: variable(match, True), pattern)
    template = _VARIABLE.sub(lambda match: variable(match, False), pattern)
    if "{" in _VARIABLE.sub("", pattern):
        raise ValueError(f"{pattern}: only {{field}}, {{field=*}} and {{field=**}} are mapped")
    return path, template, fields


def _body_reader(
    request: Descriptor,
    body: str,
    bound: frozenset[str],
    options: options_pb2.HttpRoute,
    compiled: _Compiled,
) -> BodyReader:
    """Maps a parsed JSON body onto the request (but for the fields the path binds, with
    "*"); a misfit is the route's body error."""
    error: type[GatewayError] = BY_CODE[options.body_error or "invalid_argument"]
    if body == "*":
        read = json_in.reader(request, compiled.readers, skip=bound)
        return _message_body(read, None, error)
    target = request.fields_by_name.get(body)
    if target is None or target.type != FieldDescriptor.TYPE_MESSAGE or is_map(target):
        raise ValueError(f"{request.name}.{body}: a body field must be a message or a list of them")
    read = json_in.reader(message_of(target), compiled.readers)
    if not target.is_repeated:
        return _message_body(read, target.name, error)
    item = options.single_item
    name = target.name
    shape = f"an {item} object or a list of {item} objects" if item else "a list of objects"

    def items(message: Message, document: Any) -> None:
        container = getattr(message, name)
        try:
            if isinstance(document, list):
                for index, value in enumerate(document):
                    json_in.read_item(read, container, value, name, index)
            elif isinstance(document, dict) and item:
                try:
                    read.add(container, document)
                except json_in.Misfit as misfit:
                    raise misfit.within(item) from None
            else:
                raise error(f"the body must be {shape}")
        except json_in.Misfit as misfit:
            raise error(misfit.describe()) from None

    return items


def _message_body(read: json_in.Reader, name: str | None, error: type[GatewayError]) -> BodyReader:
    """A body that is one object: the request itself (`name` None) or one of its fields."""

    def message_body(message: Message, document: Any) -> None:
        if not isinstance(document, dict):
            raise error("the body must be an object")
        try:
            read.fill(message if name is None else getattr(message, name), document)
        except json_in.Misfit as misfit:
            raise error(misfit.describe()) from None

    return message_body


def _route(method: MethodDescriptor, servicer: IngressServicer, compiled: _Compiled) -> Route:
    rule = http_rule(method)
    assert rule is not None
    options = http_route(method)
    verb, pattern = _pattern(rule)
    request = method.input_type
    path, template, path_fields = _paths(pattern, request)
    body = rule.body or None
    bound = frozenset(field.name for field in path_fields)
    query_fields = []
    if body != "*":
        query_fields = [
            field for field in request.fields if field.name not in bound and field.name != body
        ]
    path_setters = [(http_name(field), parameters.path_setter(field)) for field in path_fields]
    query_setters = [(http_name(field), parameters.query_setter(field)) for field in query_fields]
    read_body = _body_reader(request, body, bound, options, compiled) if body else None
    new_request = GetMessageClass(request)
    call: Callable[[Message], Awaitable[Message]] = getattr(servicer, method.name)
    render = json_out.renderer(method.output_type, compiled.renderers)

    async def answer(
        path_values: Mapping[str, str], query: parameters.Query, document: Any
    ) -> json_out.Document:
        message = new_request()
        for key, put in path_setters:
            put(message, path_values[key])
        if query_setters:
            parameters.read_query(query_setters, message, query)
        if read_body is not None:
            read_body(message, document)
        return render(await call(message))

    return Route(
        method=verb,
        path=path,
        template=template,
        rpc=method,
        scope=scope(method),
        status=options.status or 200,
        body=body,
        body_required=body != "*"
        or any(required(field) for field in request.fields if field.name not in bound),
        path_fields=path_fields,
        query_fields=query_fields,
        answer=answer,
    )


def routes(service: IngressService) -> list[Route]:
    """A route for every Ingress RPC with a google.api.http rule, in the proto's order."""
    servicer = IngressServicer(service)
    compiled = _Compiled()
    return [
        _route(method, servicer, compiled)
        for method in INGRESS.methods
        if http_rule(method) is not None
    ]
