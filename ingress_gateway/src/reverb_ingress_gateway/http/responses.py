"""JSON responses, and the error shape every failure takes: {"error": {"code", "message"}}."""

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from reverb_ingress_gateway.errors import GatewayError


def json_response(
    document: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(document), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(error: GatewayError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(
        {"error": {"code": error.code, "message": error.message}}, error.status.http, headers
    )
