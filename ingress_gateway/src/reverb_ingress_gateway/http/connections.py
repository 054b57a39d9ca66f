"""HTTP connections with the limits a listener open to slow or hostile clients needs.

uvicorn's httptools protocol, plus:

    - a head timeout: a request's head (request line and headers) must arrive within
      `header_timeout` seconds of the connection opening, or of the request's first byte on a
      kept-alive connection; else 408 and the connection is closed;
    - a body timeout: the whole body must arrive within `body_timeout` seconds of the head;
      else 408 (the handler sees a disconnect) and the connection is closed;
    - an idle timeout between requests (uvicorn's keep-alive timeout, here in seconds as a float);
    - a head size cap: 431 for a head over `max_head_bytes`, whether it is still arriving or
      came whole;
    - a connection limit: a request on a connection opened beyond `max_connections` is answered
      503 and its connection closed.

Refusals are the API's JSON errors with `connection: close`.
"""

import asyncio
import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from reverb_ingress_gateway.errors import (
    GatewayError,
    HeadersTooLarge,
    RequestTimeout,
    Unavailable,
)


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float
    body_timeout: float
    idle_timeout: float
    max_connections: int
    max_head_bytes: int


def _response(error: GatewayError) -> bytes:
    """A whole HTTP/1.1 response carrying `error`, closing the connection."""
    body = orjson.dumps({"error": {"code": error.code, "message": error.message}})
    status = error.status.http
    return b"".join(
        [
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode(),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def _refusal(error: GatewayError) -> Any:
    """An ASGI app that answers every request with `error` and closes the connection."""
    body = orjson.dumps({"error": {"code": error.code, "message": error.message}})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if error.status.http == 503:
        headers.append((b"retry-after", b"1"))

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": error.status.http, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return refuse


class LimitedProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits]
    _too_large: ClassVar[Any]
    _too_many: ClassVar[Any]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timeout_keep_alive = self.limits.idle_timeout  # type: ignore[assignment]
        # One loop timer per connection, moved lazily: arming sets the deadline and what to
        # call then, disarming forgets what to call, and the timer (re-armed at the deadline
        # when it fires early) is created again only when none is pending. A request on a
        # kept-alive connection then costs no timer of its own.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._on_timeout: Callable[[], None] | None = None
        self._in_head = False
        self._head_bytes = 0
        self._chunk_bytes = 0
        self._over_limit = False

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._deadline = deadline = self.loop.time() + delay
        self._on_timeout = callback
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self._timer = self.loop.call_at(deadline, self._timer_fired)

    def _disarm(self) -> None:
        self._on_timeout = None

    def _timer_fired(self) -> None:
        self._timer = None
        callback = self._on_timeout
        if callback is None:
            return
        if self.loop.time() < self._deadline:  # moved later since it was scheduled
            self._timer = self.loop.call_at(self._deadline, self._timer_fired)
            return
        self._on_timeout = None
        callback()

    def _answer_and_close(self, error: GatewayError) -> None:
        if not self.transport.is_closing():
            self.transport.write(_response(error))
            self.transport.close()

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._over_limit = len(self.connections) > self.limits.max_connections
        self._arm(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_timeout = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._chunk_bytes = len(data)
        super().data_received(data)
        if self._in_head:
            # Counts all of `data` when a head began in it: an over-estimate by at most one
            # read, for a head that has not ended yet.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._in_head = False
                self._disarm()
                self._answer_and_close(self._head_too_large())

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        if self._on_timeout is None:
            self._arm(self.limits.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.limits.body_timeout, self._body_timed_out)
        limit = self.limits.max_head_bytes
        # The head is within the bytes read since it began (earlier reads, and this one).
        bounded = self._head_bytes + self._chunk_bytes <= limit
        if not bounded:
            bounded = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) <= limit
        if bounded and not self._over_limit:
            super().on_headers_complete()
            return
        app = self.app
        self.app = self._too_many if self._over_limit else self._too_large
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # Timeouts

    def _head_too_large(self) -> GatewayError:
        return HeadersTooLarge(f"the request head is over {self.limits.max_head_bytes} bytes")

    def _head_timed_out(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._answer_and_close(
                RequestTimeout(
                    f"the request head did not arrive within {self.limits.header_timeout:g} s"
                )
            )
        else:
            self.transport.close()

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The handler reading the body sees a disconnect; what it answers is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            self._answer_and_close(
                RequestTimeout(
                    f"the request body did not arrive within {self.limits.body_timeout:g} s"
                )
            )
        else:
            self.transport.close()


def limited_protocol(limits: Limits) -> type[LimitedProtocol]:
    """The protocol class for uvicorn's `http=`, with `limits`."""

    class Configured(LimitedProtocol):
        pass

    Configured.limits = limits
    # Static: a plain function in a class would be bound to the protocol as a method.
    Configured._too_large = staticmethod(
        _refusal(HeadersTooLarge(f"the request head is over {limits.max_head_bytes} bytes"))
    )
    Configured._too_many = staticmethod(
        _refusal(Unavailable("the gateway has too many connections open; try again shortly"))
    )
    return Configured
