"""Registering the app with the gateway (reverb.v1.Ingress) and keeping the host's lease.

    register   RegisterApp, retried until the gateway answers (a host may start first)
    keep       renews the lease at a third of what was granted (RenewHostLease), never
               resending the definitions; registers again if the gateway forgot the app
    release    ends the lease when the host stops (ReleaseHostLease), best effort

Workers call only hosts whose lease has not ended, so a host that dies without
releasing is no longer called once its lease (REVERB_HOST_LEASE_SECONDS) ends.
"""

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

import grpc
import structlog
from grpc import aio

import reverb
from reverb_function_host.settings import HostSettings
from reverb_function_host.tls import ingress_channel
from reverb_function_host.wire import service

log = structlog.get_logger("reverb.function_host")

_FIRST_BACKOFF = 0.1
_CALL_TIMEOUT = 10.0
# A stopping host waits at most this long for its lease to be released.
_RELEASE_TIMEOUT = 2.0
# A lease is renewed when this share of it has passed: two renewals may fail before it ends.
RENEW_FRACTION = 1 / 3
# Answers that retrying will not change until someone fixes the configuration.
_MISCONFIGURED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
}


class Registration:
    """The app's registration at `host_address`, and the lease this host process holds."""

    def __init__(self, app: reverb.App, host_address: str, settings: HostSettings) -> None:
        self._app = app
        self._address = host_address
        self._settings = settings
        self._instance_id = uuid.uuid4().hex
        api_key = settings.api_key
        self._metadata: Sequence[tuple[str, str]] = (
            (("authorization", f"Bearer {api_key.get_secret_value()}"),) if api_key else ()
        )
        self._requested = timedelta(seconds=settings.host_lease_seconds)
        self._lease = self._requested
        # Whether a lease may be held (a registration was accepted), for `release`.
        self._holding = False

    async def keep(self, registered: asyncio.Event) -> None:
        """Register, set `registered`, then renew the lease until cancelled."""
        async with ingress_channel(self._settings) as channel:
            await self._register(channel)
            registered.set()
            await self._renew_forever(channel)

    async def release(self) -> None:
        """End the lease now (the host is stopping); a failure is logged, not raised."""
        if not self._holding:
            return
        self._holding = False
        try:
            async with ingress_channel(self._settings) as channel:
                released = await service.release_lease(
                    channel,
                    self._app.id,
                    self._address,
                    self._instance_id,
                    metadata=self._metadata,
                    timeout=_RELEASE_TIMEOUT,
                )
        except aio.AioRpcError as error:
            log.warning(
                "host lease not released; it ends on its own",
                app_id=self._app.id,
                code=error.code().name,
                details=error.details(),
                ends_within_seconds=self._lease.total_seconds(),
            )
            return
        log.info("host lease released", app_id=self._app.id, released=released)

    async def _register(self, channel: aio.Channel) -> None:
        """RegisterApp, retried with exponential backoff (up to `register_max_backoff`
        seconds) until the gateway accepts, logging each failure in one line."""
        backoff = _FIRST_BACKOFF
        while True:
            try:
                changed, lease = await service.register_app(
                    channel,
                    self._app,
                    self._address,
                    self._requested,
                    self._instance_id,
                    metadata=self._metadata,
                    timeout=_CALL_TIMEOUT,
                )
            except aio.AioRpcError as error:
                self._failed("app registration failed; retrying", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.register_max_backoff)
                continue
            self._granted(lease)
            log.info(
                "app registered",
                app_id=self._app.id,
                host_address=self._address,
                changed=changed,
                lease_seconds=self._lease.total_seconds(),
            )
            return

    async def _renew_forever(self, channel: aio.Channel) -> None:
        delay = self._lease.total_seconds() * RENEW_FRACTION
        backoff = _FIRST_BACKOFF
        while True:
            await asyncio.sleep(delay)
            try:
                lease = await service.renew_lease(
                    channel,
                    self._app.id,
                    self._address,
                    self._requested,
                    self._instance_id,
                    metadata=self._metadata,
                    timeout=min(_CALL_TIMEOUT, self._lease.total_seconds()),
                )
            except aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    log.warning("the gateway does not know the app; registering it again")
                    await self._register(channel)
                    delay = self._lease.total_seconds() * RENEW_FRACTION
                    continue
                # Retried sooner than the next renewal, but never more often than it.
                delay = min(backoff, self._lease.total_seconds() * RENEW_FRACTION)
                self._failed("host lease renewal failed; retrying", error, delay)
                backoff = min(backoff * 2, self._settings.register_max_backoff)
                continue
            self._granted(lease)
            delay = self._lease.total_seconds() * RENEW_FRACTION
            backoff = _FIRST_BACKOFF

    def _granted(self, lease: timedelta | None) -> None:
        # A gateway of an earlier release grants nothing explicit: keep asking as configured.
        self._lease = lease if lease is not None and lease > timedelta(0) else self._requested
        self._holding = True

    def _failed(self, message: str, error: aio.AioRpcError, retry_in: float) -> None:
        level = log.error if error.code() in _MISCONFIGURED else log.warning
        level(
            message,
            app_id=self._app.id,
            ingress_address=self._settings.ingress_address,
            code=error.code().name,
            details=error.details(),
            retry_in=round(retry_in, 2),
        )
