"""Reading a request body within a size limit, checked while it streams in: as JSON (the
RPC routes) or as raw bytes (the webhook routes, verified byte for byte)."""

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from reverb_ingress_gateway import json_limits
from reverb_ingress_gateway.errors import (
    ClientGone,
    InvalidArgument,
    InvalidJson,
    PayloadTooLarge,
    UnsupportedMediaType,
)


def _check_media_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise UnsupportedMediaType("send the body with `Content-Type: application/json`")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"send application/json, not {media_type or 'nothing'}")


def has_body(request: Request) -> bool:
    """Whether the request carries a body (a Content-Length over 0, or chunks), as the
    request guard tells."""
    headers = request.headers
    return headers.get("content-length", "").strip() not in ("0", "") or (
        "transfer-encoding" in headers
    )


async def read_json(request: Request, limit: int) -> Any:
    """The parsed body; 415, 413 or 400 errors for what is not a JSON body within `limit`."""
    _check_media_type(request)
    body = await read_raw(request, limit)
    if not body.strip():
        raise InvalidJson("the body is empty: send a JSON event or a list of events")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidJson(f"the body is not valid JSON: {error}") from None
    oversized = json_limits.oversized_integer(body)
    if oversized is not None:  # orjson made it a float: refuse rather than change the data
        raise InvalidArgument(f"the body {json_limits.integer_problem(oversized)}")
    return document


async def read_raw(request: Request, limit: int) -> bytes:
    """The body's bytes as they arrived, of any media type; 413 above `limit` (checked on
    Content-Length first, then while it streams)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidArgument("content-length must be a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Gone, or cut off by the body timeout (which has answered 408 itself).
        raise ClientGone("the client went away before sending the whole body") from None
    return b"".join(chunks)
