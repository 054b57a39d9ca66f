"""The webhook routes: a raw-body route kind beside the RPC routes.

A webhook's signature covers the body's exact bytes, so these routes are not RPCs (an RPC's
body is JSON mapped onto a message): the body is read raw (any media type, up to
REVERB_WEBHOOK_MAX_BODY_BYTES, 413 above), and handed with the request's headers to
`WebhookReceiver.receive`, which verifies it before anything parses it.

    POST /webhooks/{source}  authenticated by the source's signature (or `open`)
    POST /webhooks           the source `default`: an API key with the ingest scope
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from reverb_ingress_gateway.http.body import read_raw
from reverb_ingress_gateway.http.responses import json_response
from reverb_ingress_gateway.webhooks import DEFAULT_SOURCE, WebhookReceiver
from reverb_telemetry import current_traceparent

Handler = Callable[[Request], Awaitable[Response]]

SOURCE_PATH = "/webhooks/{source}"
DEFAULT_PATH = "/webhooks"


@dataclass(frozen=True, slots=True)
class RawRoute:
    path: str
    # The API key scope it needs; None: the source's signature authenticates it.
    scope: str | None
    handler: Handler


def takes_raw_body(method: str, path: str) -> bool:
    """Whether a request is one of these routes' (its body may be of any media type)."""
    if method != "POST" or not path.startswith(DEFAULT_PATH):
        return False
    rest = path[len(DEFAULT_PATH) :]
    return rest == "" or (rest.startswith("/") and "/" not in rest[1:])


def raw_routes(receiver: WebhookReceiver, max_body_bytes: int) -> list[RawRoute]:
    async def answer(request: Request, source: str) -> Response:
        receiver.check_source(source)  # 404 before the body is read
        body = await read_raw(request, max_body_bytes)
        received = await receiver.receive(
            source, request.headers.items(), body, current_traceparent()
        )
        if received.challenge is not None:
            return json_response({"challenge": received.challenge})
        return json_response({"ids": received.ids}, 202)

    async def with_source(request: Request) -> Response:
        return await answer(request, request.path_params["source"])

    async def default(request: Request) -> Response:
        return await answer(request, DEFAULT_SOURCE)

    return [RawRoute(SOURCE_PATH, None, with_source), RawRoute(DEFAULT_PATH, "ingest", default)]
