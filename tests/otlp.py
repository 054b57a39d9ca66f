"""In-process OTLP trace receivers (Jaeger's two: gRPC and HTTP/protobuf), for tests and
the bench: each keeps the spans it is sent and lets a caller await a condition on them."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    service: str
    span: trace_pb2.Span

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def attributes(self) -> dict[str, object]:
        return {item.key: _value(item.value) for item in self.span.attributes}

    @property
    def seconds(self) -> float:
        return (self.span.end_time_unix_nano - self.span.start_time_unix_nano) / 1e9


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


@dataclass
class Receiver:
    """The spans received so far; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT should be."""

    protocol: str
    endpoint: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        self.requests += 1
        for resource_spans in request.resource_spans:
            service = next(
                (
                    item.value.string_value
                    for item in resource_spans.resource.attributes
                    if item.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(ReceivedSpan(service, span) for span in scope_spans.spans)
        self._changed.set()

    async def until(
        self, check: Callable[[list[ReceivedSpan]], bool], *, within: float = 30
    ) -> list[ReceivedSpan]:
        """Await `check(spans)` becoming true as spans arrive; fail after `within` s."""
        async with asyncio.timeout(within):
            while not check(self.spans):
                self._changed.clear()
                await self._changed.wait()
        return self.spans


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    async def Export(  # noqa: N802 (the generated servicer's name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.take(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@asynccontextmanager
async def grpc_receiver(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """A grpc.aio server implementing the collector's TraceService on a free port, giving
    what it is sent to `receiver` (by default one that keeps every span)."""
    if receiver is None:
        receiver = Receiver("grpc")
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _TraceService(receiver), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    receiver.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await server.stop(0)


@asynccontextmanager
async def http_receiver() -> AsyncIterator[Receiver]:
    """An HTTP server taking OTLP/HTTP protobuf posts at /v1/traces on a free port."""
    receiver = Receiver("http/protobuf")
    loop = asyncio.get_running_loop()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path != "/v1/traces":
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            loop.call_soon_threadsafe(receiver.take, request)
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="otlp-http", daemon=True)
    thread.start()
    receiver.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


RECEIVERS = {"grpc": grpc_receiver, "http/protobuf": http_receiver}
