"""The HTTP API's routes: each parses its request into a reverb.v1 message, calls the
Ingress servicer in-process, and renders the answer as JSON."""

from collections.abc import Awaitable, Callable

from opentelemetry.trace import Status, StatusCode
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reverb_ingress_gateway.auth import ApiKeys
from reverb_ingress_gateway.calls import as_gateway_error
from reverb_ingress_gateway.errors import (
    Internal,
    MethodNotAllowed,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from reverb_ingress_gateway.health import Health
from reverb_ingress_gateway.http import openapi
from reverb_ingress_gateway.http.adapter import call
from reverb_ingress_gateway.http.body import read_json
from reverb_ingress_gateway.http.responses import error_response, json_response
from reverb_ingress_gateway.servicer import IngressService
from reverb_ingress_gateway.settings import GatewaySettings
from reverb_ingress_gateway.spans import server_span
from reverb_ingress_gateway.wire import json_api
from reverb_telemetry import context_from_traceparent

Handler = Callable[[Request], Awaitable[Response]]


def _query(request: Request) -> dict[str, list[str]]:
    return {key: request.query_params.getlist(key) for key in request.query_params}


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

    def _endpoint(self, route: str, handler: Handler, *, public: bool = False) -> Handler:
        """The handler in a span (joining the caller's traceparent), behind the API key check,
        with every failure rendered as a JSON error."""

        span_route = route.replace(":path}", "}")

        async def endpoint(request: Request) -> Response:
            parent = context_from_traceparent(request.headers.get("traceparent"))
            with server_span(f"{request.method} {span_route}", parent) as span:
                try:
                    if not public:
                        await self._authenticate(request)
                    return await handler(request)
                except Exception as raised:
                    error = as_gateway_error(raised, route)
                if isinstance(error, Internal | Unavailable):
                    span.set_status(Status(StatusCode.ERROR, error.code))
                span.set_attribute("http.response.status_code", error.http_status)
                return error_response(error)

        return endpoint

    async def _authenticate(self, request: Request) -> None:
        if self._keys is None:
            return
        if not await self._keys.allows(request.headers.get("authorization")):
            raise Unauthenticated("missing or invalid API key: send `Authorization: Bearer <key>`")

    async def send_events(self, request: Request) -> Response:
        body = await read_json(request, self._max_body_bytes)
        response = await call(self._service.SendEvents, json_api.send_events_request(body))
        return json_response(json_api.ids(response), 202)

    async def list_events(self, request: Request) -> Response:
        message = json_api.list_events_request(_query(request))
        return json_response(json_api.events_page(await call(self._service.ListEvents, message)))

    async def get_event(self, request: Request) -> Response:
        message = json_api.get_event_request(request.path_params["event_id"])
        return json_response(json_api.event_with_runs(await call(self._service.GetEvent, message)))

    async def list_runs(self, request: Request) -> Response:
        message = json_api.list_runs_request(_query(request))
        return json_response(json_api.runs_page(await call(self._service.ListRuns, message)))

    async def get_run(self, request: Request) -> Response:
        message = json_api.get_run_request(request.path_params["run_id"])
        return json_response(json_api.run_with_steps(await call(self._service.GetRun, message)))

    async def list_functions(self, request: Request) -> Response:
        message = json_api.list_functions_request()
        return json_response(json_api.functions(await call(self._service.ListFunctions, message)))

    async def health(self, request: Request) -> Response:
        problem = await self._health.check()
        if problem is not None:
            return error_response(Unavailable(problem))
        return json_response({"status": "ok"})

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi.DOCUMENT)

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler, bool]] = [
            ("/events", "POST", self.send_events, False),
            ("/events", "GET", self.list_events, False),
            ("/events/{event_id:path}", "GET", self.get_event, False),
            ("/runs", "GET", self.list_runs, False),
            ("/runs/{run_id}", "GET", self.get_run, False),
            ("/functions", "GET", self.list_functions, False),
            ("/healthz", "GET", self.health, True),
            ("/openapi.json", "GET", self.openapi, True),
        ]
        methods: dict[str, list[str]] = {}
        for path, method, _, _ in table:
            methods.setdefault(path, []).append(method)
        handlers: dict[str, dict[str, Handler]] = {}
        for path, method, handler, public in table:
            handlers.setdefault(path, {})[method] = self._endpoint(path, handler, public=public)
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
    return Starlette(
        routes=HttpApi(service, keys, settings, health).routes(),
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
