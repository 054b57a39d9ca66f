"""The HTTP API: a Starlette route for every annotated Ingress RPC (`wire.routes` maps the
JSON onto the servicer in-process), plus /healthz and /openapi.json."""

from collections.abc import Awaitable, Callable

from opentelemetry.trace import Status, StatusCode
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reverb_ingress_gateway.auth import CALLER, ApiKeys
from reverb_ingress_gateway.errors import (
    Internal,
    MethodNotAllowed,
    NotFound,
    Unavailable,
    as_gateway_error,
)
from reverb_ingress_gateway.health import Health
from reverb_ingress_gateway.http.body import has_body, read_json
from reverb_ingress_gateway.http.guard import Policy, RequestGuard
from reverb_ingress_gateway.http.responses import error_response, json_response
from reverb_ingress_gateway.http.webhooks import raw_routes, takes_raw_body
from reverb_ingress_gateway.servicer import IngressService
from reverb_ingress_gateway.settings import GatewaySettings
from reverb_ingress_gateway.spans import server_span
from reverb_ingress_gateway.wire import openapi, routes
from reverb_telemetry import context_from_traceparent

Handler = Callable[[Request], Awaitable[Response]]

# The routes that are not RPCs, in the OpenAPI document.
_PLAIN_ROUTES = [
    openapi.PlainRoute(
        "/healthz",
        "Whether the gateway can reach PostgreSQL and the apps named in"
        " REVERB_GATEWAY_REQUIRED_APPS are registered. Needs no API key.",
        {"type": "object", "properties": {"status": {"const": "ok"}}},
        (503,),
    ),
    openapi.PlainRoute("/openapi.json", "This document. Needs no API key.", {"type": "object"}),
]


class HttpApi:
    def __init__(
        self,
        service: IngressService,
        keys: ApiKeys | None,
        settings: GatewaySettings,
        health: Health,
    ) -> None:
        self._service = service
        self._health = health
        self._keys = keys
        self._max_body_bytes = settings.max_body_bytes
        self._routes = routes.routes(service)
        self._raw_routes = raw_routes(service.webhooks, settings.webhook_max_body_bytes)
        self._document = openapi.document(
            self._routes, _PLAIN_ROUTES, openapi.webhook_routes(settings.webhook_max_body_bytes)
        )

    def _endpoint(self, route: str, handler: Handler, scope: str | None) -> Handler:
        """The handler in a span (joining the caller's traceparent), behind the API key check
        (a live key holding `scope`; None: a public route), with every failure rendered as a
        JSON error."""

        span_route = route.replace(":path}", "}")
        keys = self._keys if scope is not None else None

        async def endpoint(request: Request) -> Response:
            parent = context_from_traceparent(request.headers.get("traceparent"))
            call = f"{request.method} {span_route}"
            with server_span(call, parent) as span:
                try:
                    if keys is None or scope is None:
                        return await handler(request)
                    grant = await keys.authorize(request.headers.get("authorization"), scope, call)
                    token = CALLER.set(grant)
                    try:
                        return await handler(request)
                    finally:
                        CALLER.reset(token)
                except Exception as raised:
                    error = as_gateway_error(raised, route)
                if isinstance(error, Internal | Unavailable):
                    span.set_status(Status(StatusCode.ERROR, error.code))
                span.set_attribute("http.response.status_code", error.status.http)
                return error_response(error)

        return endpoint

    def _handler(self, route: routes.Route) -> Handler:
        """Reads the body (if the route has one), answers, and renders the answer."""
        answer = route.answer
        status = route.status
        limit = self._max_body_bytes
        if route.body is None:

            async def without_body(request: Request) -> Response:
                document = await answer(request.path_params, request.query_params, None)
                return json_response(document, status)

            return without_body

        if route.body_required:

            async def with_body(request: Request) -> Response:
                body = await read_json(request, limit)
                document = await answer(request.path_params, request.query_params, body)
                return json_response(document, status)

            return with_body

        async def with_optional_body(request: Request) -> Response:
            body = await read_json(request, limit) if has_body(request) else {}
            document = await answer(request.path_params, request.query_params, body)
            return json_response(document, status)

        return with_optional_body

    async def health(self, request: Request) -> Response:
        problem = await self._health.check()
        if problem is not None:
            return error_response(Unavailable(problem))
        return json_response({"status": "ok"})

    async def openapi(self, request: Request) -> Response:
        return json_response(self._document)

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler, str | None]] = [
            (route.path, route.method, self._handler(route), route.scope) for route in self._routes
        ]
        table += [(route.path, "POST", route.handler, route.scope) for route in self._raw_routes]
        table += [
            ("/healthz", "GET", self.health, None),
            ("/openapi.json", "GET", self.openapi, None),
        ]
        methods: dict[str, list[str]] = {}
        for path, method, _, _ in table:
            methods.setdefault(path, []).append(method)
        handlers: dict[str, dict[str, Handler]] = {}
        for path, method, handler, scope in table:
            handlers.setdefault(path, {})[method] = self._endpoint(path, handler, scope)
        return [Route(path, _by_method(handlers[path]), methods=methods[path]) for path in handlers]


def _by_method(handlers: dict[str, Handler]) -> Handler:
    if len(handlers) == 1:
        return next(iter(handlers.values()))

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method if request.method != "HEAD" else "GET"](request)

    return dispatch


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) in the API's error shape."""
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        allowed = {key.lower(): value for key, value in (error.headers or {}).items()}.get("allow")
        return error_response(
            MethodNotAllowed(f"{request.method} is not allowed here; use {allowed}"),
            error.headers,
        )
    if error.status_code == 404:
        return error_response(NotFound(f"no route {request.url.path}"))
    return json_response(
        {"error": {"code": "bad_request", "message": error.detail}}, error.status_code
    )


async def _unexpected(request: Request, error: Exception) -> Response:
    return error_response(as_gateway_error(error, request.url.path))


def build_app(
    service: IngressService, keys: ApiKeys | None, settings: GatewaySettings, health: Health
) -> Starlette:
    policy = Policy(
        dev=settings.dev,
        allowed_origins=settings.http_allowed_origins,
        max_query_bytes=settings.http_max_query_bytes,
        max_query_parameters=settings.http_max_query_parameters,
        raw_body=takes_raw_body,
    )
    middleware = [Middleware(RequestGuard, policy=policy)]
    if settings.http_allowed_origins:
        # Browser pages of the listed origins may read answers and send keys (CORS).
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.http_allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "traceparent"],
                max_age=600,
            )
        )
    return Starlette(
        routes=HttpApi(service, keys, settings, health).routes(),
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
