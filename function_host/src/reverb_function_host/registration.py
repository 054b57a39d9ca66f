"""Registering the app with the gateway (reverb.v1.Ingress/RegisterApp), retried until it
answers, so that a host may start before the gateway."""

import asyncio

import grpc
import structlog
from grpc import aio
from pydantic import SecretStr

import reverb
from reverb_function_host.wire import service

log = structlog.get_logger("reverb.function_host")

_FIRST_BACKOFF = 0.1
_CALL_TIMEOUT = 10.0
# Answers that retrying will not change until someone fixes the configuration.
_MISCONFIGURED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
}


async def register(
    app: reverb.App,
    *,
    host_address: str,
    ingress_address: str,
    api_key: SecretStr | None,
    max_backoff: float,
) -> bool:
    """Register `app` as served at `host_address`; whether the definitions changed.

    Retries with exponential backoff (up to `max_backoff` seconds) until the gateway
    accepts, logging each failure in one line.
    """
    metadata = (("authorization", f"Bearer {api_key.get_secret_value()}"),) if api_key else ()
    backoff = _FIRST_BACKOFF
    async with aio.insecure_channel(ingress_address) as channel:
        while True:
            try:
                changed = await service.register_app(
                    channel, app, host_address, metadata=metadata, timeout=_CALL_TIMEOUT
                )
            except aio.AioRpcError as error:
                level = log.error if error.code() in _MISCONFIGURED else log.warning
                level(
                    "app registration failed; retrying",
                    app_id=app.id,
                    ingress_address=ingress_address,
                    code=error.code().name,
                    details=error.details(),
                    retry_in=round(backoff, 2),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            log.info(
                "app registered",
                app_id=app.id,
                host_address=host_address,
                changed=changed,
            )
            return changed
