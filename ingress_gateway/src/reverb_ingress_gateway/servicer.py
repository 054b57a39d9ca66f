"""reverb.v1.Ingress on PostgreSQL: events in; events, runs and functions out; app registration."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from reverb_contracts.v1 import ingress_pb2
from reverb_ingress_gateway import paging, validation
from reverb_ingress_gateway.calls import CallContext, rpc
from reverb_ingress_gateway.errors import AlreadyExists, InvalidArgument, NotFound
from reverb_ingress_gateway.intake import EventIntake
from reverb_ingress_gateway.settings import GatewaySettings
from reverb_ingress_gateway.wire import messages
from reverb_store import control as store
from reverb_store.control import EventCursor
from reverb_telemetry import current_traceparent


class IngressService:
    """The servicer. Its methods take a CallContext (a grpc.aio.ServicerContext, or the
    HTTP API's stand-in), so it is registered with a cast to the generated base class."""

    def __init__(self, pool: asyncpg.Pool, settings: GatewaySettings) -> None:
        self._pool = pool
        self._settings = settings
        self._intake = EventIntake(pool, acquire_timeout=settings.database_timeout)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire(timeout=self._settings.database_timeout) as connection:
            yield cast(asyncpg.Connection, connection)

    @rpc
    async def SendEvents(
        self, request: ingress_pb2.SendEventsRequest, context: CallContext
    ) -> ingress_pb2.SendEventsResponse:
        events = validation.accept_events(
            messages.event_drafts(request),
            max_event_bytes=self._settings.max_event_bytes,
            max_events=self._settings.max_events_per_request,
        )
        ids = await self._intake.accept(events, current_traceparent())
        return messages.send_events_response(ids)

    @rpc
    async def GetEvent(
        self, request: ingress_pb2.GetEventRequest, context: CallContext
    ) -> ingress_pb2.GetEventResponse:
        event_id = _required(request.id, "id")
        async with self._connection() as connection:
            event = await store.get_event(connection, event_id)
            if event is None:
                raise NotFound(f"no event with id {event_id!r}")
            runs = await store.runs_of_event(connection, event.id)
        return messages.get_event_response(event, runs)

    @rpc
    async def ListEvents(
        self, request: ingress_pb2.ListEventsRequest, context: CallContext
    ) -> ingress_pb2.ListEventsResponse:
        size = paging.page_size(request.page_size)
        after = paging.event_from_token(request.page_token)
        async with self._connection() as connection:
            events = await store.list_events(
                connection, name=request.name or None, limit=size + 1, after=after
            )
        page = events[:size]
        token = ""
        if len(events) > size:
            token = paging.event_token(EventCursor(page[-1].received_at, page[-1].id))
        return messages.list_events_response(page, token)

    @rpc
    async def GetRun(
        self, request: ingress_pb2.GetRunRequest, context: CallContext
    ) -> ingress_pb2.GetRunResponse:
        run_id = _required(request.id, "id")
        async with self._connection() as connection:
            run = await store.get_run(connection, run_id)
            if run is None:
                raise NotFound(f"no run with id {run_id!r}")
            steps = await store.list_steps(connection, run_id)
        return messages.get_run_response(run, steps)

    @rpc
    async def ListRuns(
        self, request: ingress_pb2.ListRunsRequest, context: CallContext
    ) -> ingress_pb2.ListRunsResponse:
        size = paging.page_size(request.page_size)
        before = paging.run_from_token(request.page_token)
        run_filter = messages.run_filter(request)
        async with self._connection() as connection:
            runs = await store.list_runs(connection, run_filter, limit=size + 1, before_id=before)
        page = runs[:size]
        token = paging.run_token(page[-1].id) if len(runs) > size else ""
        return messages.list_runs_response(page, token)

    @rpc
    async def ListFunctions(
        self, request: ingress_pb2.ListFunctionsRequest, context: CallContext
    ) -> ingress_pb2.ListFunctionsResponse:
        async with self._connection() as connection:
            functions = await store.list_functions(connection)
        return messages.list_functions_response(functions)

    @rpc
    async def RegisterApp(
        self, request: ingress_pb2.RegisterAppRequest, context: CallContext
    ) -> ingress_pb2.RegisterAppResponse:
        app = messages.app_definition(request.app)
        validation.check_app(app, request.host_address)
        try:
            async with self._connection() as connection:
                changed = await store.register_app(connection, app, request.host_address)
        except store.FunctionOwnedByAnotherApp as error:
            raise AlreadyExists(str(error)) from None
        return messages.register_app_response(changed)


def _required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    return value
