"""Starting and stopping the gateway: a PostgreSQL pool, the gRPC server, the HTTP server."""

import asyncio
import contextlib
import signal
import socket
from dataclasses import dataclass

import asyncpg
import structlog
import uvicorn

from reverb_ingress_gateway.auth import ApiKeys
from reverb_ingress_gateway.grpc_server import GrpcServer, start_grpc_server
from reverb_ingress_gateway.health import Health
from reverb_ingress_gateway.http.app import build_app
from reverb_ingress_gateway.http.connections import Limits, limited_protocol
from reverb_ingress_gateway.http.guard import is_loopback_name
from reverb_ingress_gateway.servicer import IngressService
from reverb_ingress_gateway.settings import GatewaySettings
from reverb_ingress_gateway.tls import server_credentials
from reverb_store import prepare_insert
from reverb_telemetry import configure_logging, configure_tracing
from reverb_telemetry.metrics import MetricsServer, serve_metrics

logger = structlog.get_logger("reverb.ingress_gateway")

_GRACE_SECONDS = 5.0


class UnsafeDevMode(RuntimeError):
    """Dev mode (no API keys) was asked for on an address other machines can reach."""


def split_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"."""
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def _check_dev_mode(settings: GatewaySettings) -> None:
    if not settings.dev:
        return
    for address in (settings.http_address, settings.ingress_address):
        if not is_loopback_name(split_address(address)[0]):
            raise UnsafeDevMode(
                f"dev mode turns API keys off, so it only binds loopback addresses, not {address}"
            )


def _bind(address: str) -> socket.socket:
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release a pooled connection as it is: the gateway leaves no session state behind (no
    LISTEN, advisory locks, cursors or SET), so asyncpg's reset query would be a wasted trip."""


async def _warm_up(pool: asyncpg.Pool, count: int, wait_seconds: float) -> None:
    """Open `count` connections now; if PostgreSQL is down, say so and serve 503s until it is up."""

    async def open_one() -> None:
        async with pool.acquire(timeout=wait_seconds) as connection:
            await connection.execute("SELECT 1")

    results = await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        logger.warning("database unreachable at start", error=repr(failures[0]))


@dataclass(eq=False)
class Gateway:
    """A running gateway: its real ports, and `stop()`."""

    http_port: int
    grpc_port: int
    # The API key checks (None in dev mode).
    keys: ApiKeys | None
    _service: IngressService
    _pool: asyncpg.Pool
    _grpc: GrpcServer
    _http: uvicorn.Server
    _http_socket: socket.socket
    _http_loop: asyncio.Task[None]
    # GET /metrics (REVERB_METRICS_ADDRESS), or None.
    metrics_server: MetricsServer | None = None

    async def stop(self) -> None:
        """Stop taking requests, finish those under way (up to a few seconds), close the pool."""
        self._http.should_exit = True
        await self._http_loop
        await asyncio.gather(
            self._http.shutdown(sockets=[self._http_socket]), self._grpc.stop(_GRACE_SECONDS)
        )
        if self.keys is not None:
            await self.keys.close()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)
        await self._service.logs.close()
        try:
            await asyncio.wait_for(self._pool.close(), _GRACE_SECONDS)
        except TimeoutError:
            self._pool.terminate()
        logger.info("gateway stopped")


async def start(settings: GatewaySettings) -> Gateway:
    """Start both servers; with port 0 in an address, the handle reports the real port."""
    _check_dev_mode(settings)
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=settings.database_pool_size,
        timeout=settings.database_timeout,
        reset=_keep_session,
        # A new backend's first acceptance would plan it and compile the queue's triggers.
        init=prepare_insert,
    )
    keys: ApiKeys | None = None
    try:
        await _warm_up(pool, min(4, settings.database_pool_size), settings.database_timeout)
        service = IngressService(pool, settings)
        health = Health(pool, settings)
        if not settings.dev:
            keys = ApiKeys(
                pool,
                database_url=settings.database_url,
                cache_seconds=settings.api_key_cache_seconds,
                unknown_cache_seconds=settings.api_key_unknown_cache_seconds,
                timeout=settings.database_timeout,
            )
            await keys.start()
        grpc_server = await start_grpc_server(
            service,
            keys,
            health,
            address=settings.ingress_address,
            max_message_bytes=settings.max_body_bytes,
            health_check_interval=settings.health_check_interval,
            credentials=server_credentials(settings),
        )
    except BaseException:
        if keys is not None:
            await keys.close()
        pool.terminate()
        raise
    try:
        http_socket = _bind(settings.http_address)
        limits = Limits(
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            idle_timeout=settings.http_idle_timeout,
            max_connections=settings.http_max_connections,
            max_head_bytes=settings.http_max_head_bytes,
        )
        config = uvicorn.Config(
            build_app(service, keys, settings, health),
            http=limited_protocol(limits),
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=False,
            ws="none",
            timeout_graceful_shutdown=int(_GRACE_SECONDS),
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[http_socket])
        metrics_server = None
        if settings.metrics_address is not None:
            metrics_server = serve_metrics(settings.metrics_address, service.metrics.registry)
    except BaseException:
        await grpc_server.stop(0)
        if keys is not None:
            await keys.close()
        pool.terminate()
        raise
    gateway = Gateway(
        http_port=http_socket.getsockname()[1],
        grpc_port=grpc_server.port,
        keys=keys,
        _service=service,
        _pool=pool,
        _grpc=grpc_server,
        _http=server,
        _http_socket=http_socket,
        _http_loop=asyncio.create_task(server.main_loop(), name="reverb-gateway-http"),
        metrics_server=metrics_server,
    )
    logger.info(
        "gateway started",
        http_port=gateway.http_port,
        grpc_port=gateway.grpc_port,
        grpc_tls="mutual" if settings.tls_ca else "on" if settings.tls_cert else "off",
        dev=settings.dev,
        metrics=None if metrics_server is None else metrics_server.url,
    )
    return gateway


async def serve(settings: GatewaySettings) -> None:
    """Run the gateway until cancelled or sent SIGTERM/SIGINT, then stop it gracefully."""
    configure_logging(json=settings.log_json, level=settings.log_level)
    tracing = configure_tracing("reverb-gateway")
    gateway = await start(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal_number, stopping.set)
    try:
        await stopping.wait()
    finally:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal_number)
        await gateway.stop()
        await asyncio.to_thread(tracing.shutdown)
