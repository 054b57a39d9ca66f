"""Starting and stopping a function host: the gRPC server, health, reflection, registration."""

import asyncio
import contextlib
import signal
import socket

import structlog
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import reverb
from reverb.signing import Keyring
from reverb_function_host.metrics import HostMetrics
from reverb_function_host.registration import Registration
from reverb_function_host.settings import HostSettings
from reverb_function_host.signing import SignatureInterceptor
from reverb_function_host.tls import server_credentials
from reverb_function_host.wire import service
from reverb_function_host.wire.malformed import MalformedRequestInterceptor
from reverb_telemetry import configure_logging, configure_tracing
from reverb_telemetry.metrics import MetricsServer, serve_metrics

log = structlog.get_logger("reverb.function_host")


class InsecureHostError(ValueError):
    """A host without a signing key that was not told it may run insecurely."""


def signing_keyring(settings: HostSettings) -> Keyring | None:
    """The keys Starts are verified with; None only for a host explicitly insecure.
    Raises InsecureHostError for a host with neither a key nor REVERB_HOST_INSECURE."""
    if settings.signing_key is None:
        if not settings.host_insecure:
            raise InsecureHostError(
                "REVERB_SIGNING_KEY is not set: a host without it would run any caller's"
                " Starts (set REVERB_HOST_INSECURE=true to allow that, never in production)"
            )
        return None
    previous = settings.signing_key_previous
    return Keyring(
        settings.signing_key.get_secret_value(),
        [previous.get_secret_value()] if previous is not None else [],
    )


class Host:
    """A running function host. `registered` is set once the gateway accepted the app; the
    host then keeps its lease until it stops."""

    def __init__(
        self,
        server: aio.Server,
        health_service: health.aio.HealthServicer,
        servicer: service.FunctionHostService,
        port: int,
        address: str,
        metrics_server: MetricsServer | None = None,
    ) -> None:
        self.port = port
        # GET /metrics (REVERB_METRICS_ADDRESS), or None.
        self.metrics_server = metrics_server
        self.address = address
        self.registered = asyncio.Event()
        self._server = server
        self._health = health_service
        self._servicer = servicer
        self._registration: Registration | None = None
        self._keeping: asyncio.Task[None] | None = None

    async def stop(self, grace: float | None = None) -> None:
        """Stop renewing and release the lease (workers stop choosing this host), report
        NOT_SERVING, stop the server after `grace` seconds, and wait until its sessions are
        closed."""
        if self._keeping is not None:
            self._keeping.cancel()
            await asyncio.wait((self._keeping,))
        if self._registration is not None:
            await self._registration.release()
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        await self._servicer.closed()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)


async def start(app: reverb.App, settings: HostSettings, *, register_app: bool = True) -> Host:
    """Serve `app` on `settings.host_address` and register it with the gateway in the
    background (unless `register_app` is False); await `host.registered` to know it is done."""
    if not app.functions:
        raise ValueError(f"app {app.id!r} has no functions to serve")
    keyring = signing_keyring(settings)
    interceptors: list[aio.ServerInterceptor] = []
    if keyring is not None:
        secrets = [key.secret for key in keyring.keys]
        interceptors.append(SignatureInterceptor(secrets, f"/{service.SERVICE_NAME}/"))
    else:
        log.warning("REVERB_HOST_INSECURE: this host runs unsigned Starts", app_id=app.id)
    credentials = server_credentials(settings)
    # Inside the signature check: an unsigned call is refused before its request is read.
    interceptors.append(MalformedRequestInterceptor())
    limit = settings.max_message_bytes
    server = aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    servicer = service.add_function_host(server, app, limit, keyring)
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    reflection.enable_server_reflection(
        (service.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if credentials is None:
        port = server.add_insecure_port(settings.host_address)
    else:
        port = server.add_secure_port(settings.host_address, credentials)
    address = settings.host_advertise_address or _advertised(settings.host_address, port)
    servicer.address = address
    await server.start()
    for name in ("", service.SERVICE_NAME):
        await health_service.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics_server = None
    if settings.metrics_address is not None:
        metrics = HostMetrics(lambda: servicer.sessions)
        try:
            metrics_server = serve_metrics(settings.metrics_address, metrics.registry)
        except BaseException:
            await server.stop(0)
            raise
    host = Host(server, health_service, servicer, port, address, metrics_server)
    log.info(
        "function host serving",
        app_id=app.id,
        port=port,
        address=address,
        metrics=None if metrics_server is None else metrics_server.url,
        tls="mutual" if settings.tls_ca else "on" if credentials else "off",
    )
    if register_app:
        registration = Registration(app, address, settings)
        host._registration = registration
        host._keeping = asyncio.create_task(_keep(registration, host))
    return host


async def serve(app: reverb.App, settings: HostSettings) -> None:
    """Configure logging, start the host, and run until cancelled, SIGINT or SIGTERM."""
    configure_logging(json=settings.log_json, level=settings.log_level)
    tracing = configure_tracing("reverb-host")
    host = await start(app, settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signum, stopping.set)
            handled.append(signum)
    try:
        await stopping.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await host.stop(settings.shutdown_grace)
        await asyncio.to_thread(tracing.shutdown)


async def _keep(registration: Registration, host: Host) -> None:
    try:
        await registration.keep(host.registered)
    except Exception:
        log.exception("app registration crashed; the host serves but its lease will end")


def _advertised(bound: str, port: int) -> str:
    """`bound` with its real port; a wildcard host is replaced by this machine's name."""
    hostname = bound.rpartition(":")[0].strip("[]")
    if hostname in ("", "0.0.0.0", "::"):
        hostname = socket.gethostname()
    elif ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{hostname}:{port}"
