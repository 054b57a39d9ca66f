"""The Ingress calls on PostgreSQL: events in; events, runs and functions out; app registration.

Domain types in and out, and GatewayError for what the caller got wrong: the
gRPC service and the HTTP API both reach these methods through
`wire.ingress.IngressServicer`, which converts reverb.v1 messages.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar, cast

import asyncpg
from opentelemetry import trace

from reverb_ingress_gateway import host_leases, paging, validation
from reverb_ingress_gateway.auth import CALLER
from reverb_ingress_gateway.errors import (
    AlreadyExists,
    FailedPrecondition,
    GatewayError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from reverb_ingress_gateway.intake import EventIntake
from reverb_ingress_gateway.logs_api import LogsApi
from reverb_ingress_gateway.metrics import GatewayMetrics
from reverb_ingress_gateway.settings import GatewaySettings
from reverb_ingress_gateway.validation import EventDraft
from reverb_ingress_gateway.webhooks import WebhookReceiver
from reverb_store import control as store
from reverb_store import cron, execution
from reverb_store.control import (
    AppDefinition,
    EventCursor,
    EventRecord,
    FunctionRecord,
    ReplayRequest,
    RunFilter,
    RunRecord,
    StepRecord,
)
from reverb_store.execution import RunStatus
from reverb_store.flow.gates import flow_gates
from reverb_store.ids import EventId, FunctionId, RunId, StepId
from reverb_store.logs.sinks import reader_for
from reverb_store.webhooks import DeliveryRecord
from reverb_telemetry import current_traceparent

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    items: Sequence[Item]
    # Where the next page starts; empty on the last page.
    next_page_token: str


class IngressService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: GatewaySettings,
        metrics: GatewayMetrics | None = None,
        gates: execution.Gates | None = None,
    ) -> None:
        self._pool = pool
        # The run gates the workers register (`reverb worker`: the flow-control gates),
        # told of the gated runs a cancellation stops, so their slots go on at once.
        self._gates = execution.Gates(flow_gates()) if gates is None else gates
        self._settings = settings
        self.metrics = GatewayMetrics() if metrics is None else metrics
        self._intake = EventIntake(pool, acquire_timeout=settings.database_timeout)
        self.webhooks = WebhookReceiver(
            pool,
            settings.webhooks,
            acquire_timeout=settings.database_timeout,
            accepted=self.metrics.webhook_events.inc,
        )
        self.logs = LogsApi(
            reader_for(settings, pool),
            pool,
            derive_steps=not settings.log_step_documents,
            database_timeout=settings.database_timeout,
        )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire(timeout=self._settings.database_timeout) as connection:
            yield cast(asyncpg.Connection, connection)

    async def send_events(self, drafts: Sequence[EventDraft]) -> list[str]:
        """The events' ids, once they are committed with their fan-out job."""
        events = validation.accept_events(
            drafts,
            max_event_bytes=self._settings.max_event_bytes,
            max_events=self._settings.max_events_per_request,
        )
        ids = await self._intake.accept(events, current_traceparent())
        self.metrics.api_events.inc(len(ids))
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("reverb.event.id", ids)
            span.set_attribute("reverb.event.name", sorted({event.name for event in events}))
        return ids

    async def get_event(
        self, event_id: str
    ) -> tuple[
        EventRecord,
        list[RunRecord],
        list[execution.SkippedRun],
        list[tuple[RunId, FunctionId]],
    ]:
        """The event, the runs it triggered, the runs it did not start, and the runs it
        cancelled (cancel_on)."""
        validation.check_text(_required(event_id, "id"), "id")
        async with self._connection() as connection:
            event = await store.get_event(connection, event_id)
            if event is None:
                raise NotFound(f"no event with id {event_id!r}")
            runs = await store.runs_of_event(connection, event.id)
            skipped = await execution.skips_of_event(connection, event.id)
            cancelled = await execution.cancellations_of_event(connection, event.id)
        return event, runs, skipped, cancelled

    async def list_events(self, name: str, page_size: int, page_token: str) -> Page[EventRecord]:
        validation.check_text(name, "name")
        size = paging.page_size(page_size)
        after = paging.event_from_token(page_token)
        async with self._connection() as connection:
            events = await store.list_events(
                connection, name=name or None, limit=size + 1, after=after
            )
        page = events[:size]
        token = ""
        if len(events) > size:
            token = paging.event_token(EventCursor(page[-1].received_at, page[-1].id))
        return Page(page, token)

    async def get_run(self, run_id: str) -> tuple[RunRecord, list[StepRecord]]:
        """The run and its steps in the order they started."""
        validation.check_text(_required(run_id, "id"), "id")
        async with self._connection() as connection:
            run = await store.get_run(connection, run_id)
            if run is None:
                raise NotFound(f"no run with id {run_id!r}")
            steps = await store.list_steps(connection, run_id)
        return run, steps

    async def list_runs(
        self, run_filter: RunFilter, page_size: int, page_token: str
    ) -> Page[RunRecord]:
        validation.check_text(run_filter.function_id or "", "function")
        validation.check_text(run_filter.event_id or "", "event")
        size = paging.page_size(page_size)
        before = paging.run_from_token(page_token)
        async with self._connection() as connection:
            runs = await store.list_runs(connection, run_filter, limit=size + 1, before_id=before)
        page = runs[:size]
        return Page(page, paging.run_token(page[-1].id) if len(runs) > size else "")

    async def list_functions(self) -> list[FunctionRecord]:
        async with self._connection() as connection:
            return await store.list_functions(connection)

    async def register_app(
        self,
        app: AppDefinition,
        host_address: str,
        lease: timedelta | None = None,
        instance_id: str = "",
    ) -> tuple[bool, timedelta]:
        """Whether the app's definitions changed, and the lease granted (None: the default).
        Outside dev mode, only a host key bound to the app may register it."""
        self._check_host_of(app.id)
        validation.check_app(app, host_address)
        granted = self._grant(host_address, lease, instance_id)
        try:
            async with self._connection() as connection:
                changed = await store.register_app(connection, app, granted)
        except store.FunctionOwnedByAnotherApp as error:
            raise AlreadyExists(str(error)) from None
        return changed, granted.duration

    async def renew_host_lease(
        self, app_id: str, host_address: str, lease: timedelta | None, instance_id: str
    ) -> timedelta:
        """Extend the lease (the app's definitions stay as they are); the lease granted.
        Outside dev mode, only a host key bound to the app may renew it."""
        self._check_host_of(app_id)
        host_leases.check_app_id(app_id)
        granted = self._grant(host_address, lease, instance_id)
        async with self._connection() as connection:
            if not await store.renew_lease(connection, app_id, granted):
                raise NotFound(f"app {app_id!r} is not registered: register it first")
        return granted.duration

    async def release_host_lease(self, app_id: str, host_address: str, instance_id: str) -> bool:
        """End the lease `instance_id` holds on `host_address`; False if it held none.
        Outside dev mode, only a host key bound to the app may release it."""
        self._check_host_of(app_id)
        host_leases.check_app_id(app_id)
        host_leases.check_host_address(host_address)
        host_leases.check_instance_id(instance_id)
        async with self._connection() as connection:
            return await store.release_lease(connection, app_id, host_address, instance_id)

    async def list_webhook_deliveries(
        self, source: str, page_size: int, page_token: str
    ) -> Page[DeliveryRecord]:
        validation.check_text(source, "source")
        size = paging.page_size(page_size)
        before = paging.delivery_from_token(page_token)
        deliveries = await self.webhooks.list_deliveries(source or None, size + 1, before)
        page = deliveries[:size]
        token = paging.delivery_token(page[-1].id) if len(deliveries) > size else ""
        return Page(page, token)

    async def replay_webhook_delivery(self, delivery: str) -> str:
        """The id of the event emitted again from the kept delivery."""
        validation.check_text(_required(delivery, "id"), "id")
        return await self.webhooks.replay(delivery, current_traceparent())

    async def replay_run(self, run_id: str, from_step: str, data: bytes | None) -> str:
        """The id of the new run replaying `run_id` (from `from_step` if not empty, with
        `data` as its triggering event's data if not None)."""
        validation.check_text(_required(run_id, "id"), "id")
        validation.check_text(from_step, "from_step")
        request = ReplayRequest(
            RunId(run_id),
            from_step=StepId(from_step) if from_step else None,
            data=None
            if data is None
            else validation.event_data(data, "replay", self._settings.max_event_bytes),
        )
        async with self._connection() as connection:
            try:
                return await store.replay_run(connection, request, current_traceparent())
            except store.ReplayRefused as error:
                raise _replay_error(error) from None

    async def replay_runs(
        self,
        function_id: str,
        status: RunStatus | None,
        created_from: datetime | None,
        created_to: datetime | None,
    ) -> list[str]:
        """Replay the function's runs that ended in `status` (failed by default), created in
        [created_from, created_to); the new runs' ids."""
        validation.check_text(_required(function_id, "function"), "function")
        if created_from is not None and created_to is not None and created_to <= created_from:
            raise InvalidArgument("to must be later than from")
        statuses: tuple[RunStatus, ...] = (status or "failed",)
        async with self._connection() as connection:
            try:
                replays = await store.replay_runs(
                    connection,
                    FunctionId(function_id),
                    statuses,
                    created_from,
                    created_to,
                    current_traceparent(),
                )
            except store.RunInFlight as error:
                raise InvalidArgument(str(error)) from None
            except store.ReplayRefused as error:
                raise _replay_error(error) from None
        return list(replays)

    async def cancel_run(self, run_id: str) -> tuple[RunRecord, list[StepRecord]]:
        """Cancel the run (and the runs it invoked); the run as it is then, with its steps."""
        validation.check_text(_required(run_id, "id"), "id")
        async with self._connection() as connection:
            previous = await execution.cancel_run(connection, RunId(run_id), gates=self._gates)
            if previous is None:
                raise NotFound(f"no run with id {run_id!r}")
            if previous in ("completed", "failed"):
                raise FailedPrecondition(f"run {run_id!r} has {previous}: it cannot be cancelled")
            run = await store.get_run(connection, run_id)
            steps = await store.list_steps(connection, run_id)
        assert run is not None  # runs are never deleted
        return run, steps

    async def cancel_runs(
        self,
        function_id: str,
        created_from: datetime | None,
        created_to: datetime | None,
        status: RunStatus | None,
    ) -> int:
        """Cancel the function's runs created in [created_from, created_to); how many."""
        validation.check_text(_required(function_id, "function"), "function")
        if created_from is None:
            raise InvalidArgument("from is required")
        if created_to is None:
            raise InvalidArgument("to is required")
        if created_to <= created_from:
            raise InvalidArgument("to must be later than from")
        if status is not None and status not in execution.CANCELLABLE:
            raise InvalidArgument(
                f"status must be one of {', '.join(sorted(execution.CANCELLABLE))}: runs that"
                f" are {status} cannot be cancelled"
            )
        async with self._connection() as connection:
            return await execution.cancel_runs(
                connection,
                FunctionId(function_id),
                created_from,
                created_to,
                execution.CANCELLABLE if status is None else (status,),
                gates=self._gates,
            )

    async def pause_function(self, function_id: str) -> FunctionRecord:
        """Pause the function; the function as it is then."""
        validation.check_text(_required(function_id, "id"), "id")
        async with self._connection() as connection:
            if await execution.pause_function(connection, FunctionId(function_id)) is None:
                raise NotFound(f"no function with id {function_id!r}")
            return await self._function(connection, function_id)

    async def resume_function(
        self, function_id: str, replay_skipped: bool
    ) -> tuple[FunctionRecord, execution.Resumed]:
        """Resume the function; the function as it is then, and what the resume did."""
        validation.check_text(_required(function_id, "id"), "id")
        async with self._connection() as connection:
            resumed = await execution.resume_function(
                connection, FunctionId(function_id), replay_skipped=replay_skipped
            )
            if resumed is None:
                raise NotFound(f"no function with id {function_id!r}")
            return await self._function(connection, function_id), resumed

    async def _function(self, connection: asyncpg.Connection, function_id: str) -> FunctionRecord:
        function = await store.get_function(connection, function_id)
        if function is None:  # removed by a registration in between
            raise NotFound(f"no function with id {function_id!r}")
        return function

    async def trigger_schedule(self, function_id: str) -> EventId:
        """Fire a tick of the function's (first) cron schedule now; the tick's event id."""
        validation.check_text(_required(function_id, "id"), "id")
        async with self._connection() as connection:
            try:
                stored = await cron.trigger(connection, function_id)
            except cron.NoSchedule as error:
                raise _schedule_error(error) from None
        return stored.event_ids[0]

    async def backfill_schedule(
        self, function_id: str, start: datetime | None, end: datetime | None
    ) -> cron.Stored:
        """Run each tick of the function's cron schedules from `start` to `end` once."""
        validation.check_text(_required(function_id, "id"), "id")
        if start is None or end is None:
            raise InvalidArgument("from and to are required")
        if end < start:
            raise InvalidArgument("to must not be before from")
        async with self._connection() as connection:
            try:
                return await cron.backfill(connection, function_id, start, end)
            except cron.NoSchedule as error:
                raise _schedule_error(error) from None
            except cron.BackfillTooLarge as error:
                raise InvalidArgument(str(error)) from None

    def _grant(
        self, host_address: str, lease: timedelta | None, instance_id: str
    ) -> store.HostLease:
        maximum = timedelta(seconds=self._settings.host_lease_max_seconds)
        return host_leases.grant(host_address, lease, instance_id, maximum=maximum)

    def _check_host_of(self, app_id: str) -> None:
        if self._settings.dev:
            return
        caller = CALLER.get()
        if caller is None or store.HOST not in caller.scopes or app_id not in caller.apps:
            bound = ", ".join(sorted(caller.apps)) if caller is not None else ""
            raise PermissionDenied(
                f"this API key may not register app {app_id!r}: only a host key bound to it may"
                + (f" (this one is bound to {bound})" if bound else "")
            )


def _replay_error(error: store.ReplayRefused) -> GatewayError:
    if isinstance(error, store.RunNotFound | store.FunctionUnregistered):
        return NotFound(str(error))
    if isinstance(error, store.RunInFlight):
        return FailedPrecondition(str(error))
    return InvalidArgument(str(error))


def _required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    return value


def _schedule_error(error: cron.NoSchedule) -> GatewayError:
    return FailedPrecondition(str(error)) if error.known else NotFound(str(error))
