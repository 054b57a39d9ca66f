"""reverb.v1.Ingress's calls: each converts its request, calls the servicer, converts the answer.

The gRPC service (`wire.rpc`) and the HTTP routes (`wire.routes`) both call
these methods, in-process for HTTP; a failure is the GatewayError the servicer
raised, which each side renders with `errors.STATUSES`.
"""

from reverb_contracts.v1 import ingress_pb2
from reverb_ingress_gateway.logs_api import read_span
from reverb_ingress_gateway.servicer import IngressService
from reverb_ingress_gateway.wire import logs, messages


class IngressServicer:
    """One method per Ingress RPC, named as in the proto: a request in, a response out."""

    def __init__(self, service: IngressService) -> None:
        self._service = service

    async def SendEvents(
        self, request: ingress_pb2.SendEventsRequest
    ) -> ingress_pb2.SendEventsResponse:
        ids = await self._service.send_events(messages.event_drafts(request))
        return ingress_pb2.SendEventsResponse(ids=ids)

    async def GetEvent(self, request: ingress_pb2.GetEventRequest) -> ingress_pb2.GetEventResponse:
        event, runs, skipped, cancelled = await self._service.get_event(request.id)
        return messages.get_event_response(event, runs, skipped, cancelled)

    async def ListEvents(
        self, request: ingress_pb2.ListEventsRequest
    ) -> ingress_pb2.ListEventsResponse:
        page = await self._service.list_events(request.name, request.page_size, request.page_token)
        return messages.list_events_response(page)

    async def GetRun(self, request: ingress_pb2.GetRunRequest) -> ingress_pb2.GetRunResponse:
        run, steps = await self._service.get_run(request.id)
        return messages.get_run_response(run, steps)

    async def ListRuns(self, request: ingress_pb2.ListRunsRequest) -> ingress_pb2.ListRunsResponse:
        page = await self._service.list_runs(
            messages.run_filter(request), request.page_size, request.page_token
        )
        return messages.list_runs_response(page)

    async def ListFunctions(
        self, request: ingress_pb2.ListFunctionsRequest
    ) -> ingress_pb2.ListFunctionsResponse:
        return messages.list_functions_response(await self._service.list_functions())

    async def RegisterApp(
        self, request: ingress_pb2.RegisterAppRequest
    ) -> ingress_pb2.RegisterAppResponse:
        changed, lease = await self._service.register_app(
            messages.app_definition(request.app),
            request.host_address,
            messages.lease(request),
            request.instance_id,
        )
        response = ingress_pb2.RegisterAppResponse(changed=changed)
        response.lease.FromTimedelta(lease)
        return response

    async def RenewHostLease(
        self, request: ingress_pb2.RenewHostLeaseRequest
    ) -> ingress_pb2.RenewHostLeaseResponse:
        lease = await self._service.renew_host_lease(
            request.app_id, request.host_address, messages.lease(request), request.instance_id
        )
        response = ingress_pb2.RenewHostLeaseResponse()
        response.lease.FromTimedelta(lease)
        return response

    async def ReleaseHostLease(
        self, request: ingress_pb2.ReleaseHostLeaseRequest
    ) -> ingress_pb2.ReleaseHostLeaseResponse:
        released = await self._service.release_host_lease(
            request.app_id, request.host_address, request.instance_id
        )
        return ingress_pb2.ReleaseHostLeaseResponse(released=released)

    async def ListWebhookDeliveries(
        self, request: ingress_pb2.ListWebhookDeliveriesRequest
    ) -> ingress_pb2.ListWebhookDeliveriesResponse:
        page = await self._service.list_webhook_deliveries(
            request.source, request.page_size, request.page_token
        )
        return messages.list_webhook_deliveries_response(page)

    async def CancelRun(
        self, request: ingress_pb2.CancelRunRequest
    ) -> ingress_pb2.CancelRunResponse:
        run, steps = await self._service.cancel_run(request.id)
        return ingress_pb2.CancelRunResponse(run=messages.run(run, steps))

    async def CancelRuns(
        self, request: ingress_pb2.CancelRunsRequest
    ) -> ingress_pb2.CancelRunsResponse:
        count = await self._service.cancel_runs(
            request.function_id,
            messages.optional_time(request, "created_from"),
            messages.optional_time(request, "created_to"),
            messages.run_status(request.status),
        )
        return ingress_pb2.CancelRunsResponse(count=count)

    async def PauseFunction(
        self, request: ingress_pb2.PauseFunctionRequest
    ) -> ingress_pb2.PauseFunctionResponse:
        function = await self._service.pause_function(request.id)
        return ingress_pb2.PauseFunctionResponse(function=messages.function_info(function))

    async def ResumeFunction(
        self, request: ingress_pb2.ResumeFunctionRequest
    ) -> ingress_pb2.ResumeFunctionResponse:
        function, resumed = await self._service.resume_function(request.id, request.replay_skipped)
        return ingress_pb2.ResumeFunctionResponse(
            function=messages.function_info(function),
            resumed_runs=resumed.runs,
            replayed_runs=resumed.replayed,
        )

    async def ReplayWebhookDelivery(
        self, request: ingress_pb2.ReplayWebhookDeliveryRequest
    ) -> ingress_pb2.ReplayWebhookDeliveryResponse:
        event_id = await self._service.replay_webhook_delivery(request.id)
        return ingress_pb2.ReplayWebhookDeliveryResponse(ids=[event_id])

    async def ReplayRun(
        self, request: ingress_pb2.ReplayRunRequest
    ) -> ingress_pb2.ReplayRunResponse:
        run_id = await self._service.replay_run(
            request.id, request.from_step, request.data if request.HasField("data") else None
        )
        return ingress_pb2.ReplayRunResponse(run_id=run_id)

    async def ReplayRuns(
        self, request: ingress_pb2.ReplayRunsRequest
    ) -> ingress_pb2.ReplayRunsResponse:
        run_ids = await self._service.replay_runs(
            request.function_id,
            messages.run_status(request.status),
            messages.optional_time(request, "created_from"),
            messages.optional_time(request, "created_to"),
        )
        return ingress_pb2.ReplayRunsResponse(count=len(run_ids), run_ids=run_ids)

    async def ListLogs(self, request: ingress_pb2.ListLogsRequest) -> ingress_pb2.ListLogsResponse:
        page = await self._service.logs.list_logs(
            request.cursor,
            read_span(request.start_time, request.end_time),
            request.page_size,
            request.level,
            request.run_id,
        )
        return logs.list_logs_response(page)

    async def ListEventLogs(
        self, request: ingress_pb2.ListEventLogsRequest
    ) -> ingress_pb2.ListEventLogsResponse:
        page = await self._service.logs.event_logs(
            request.name,
            read_span(request.start_time, request.end_time),
            request.page,
            request.page_size,
        )
        return ingress_pb2.ListEventLogsResponse(
            logs=logs.document_entries(page), links=logs.page_links(page.links)
        )

    async def GetEventLogs(
        self, request: ingress_pb2.GetEventLogsRequest
    ) -> ingress_pb2.GetEventLogsResponse:
        page = await self._service.logs.event_runs(
            request.event_id, request.page, request.page_size
        )
        return ingress_pb2.GetEventLogsResponse(
            logs=logs.summary_entries(page), links=logs.page_links(page.links)
        )

    async def ListFunctionLogs(
        self, request: ingress_pb2.ListFunctionLogsRequest
    ) -> ingress_pb2.ListFunctionLogsResponse:
        page = await self._service.logs.functions(
            request.name,
            request.id,
            read_span(request.start_time, request.end_time),
            request.page,
            request.page_size,
        )
        return ingress_pb2.ListFunctionLogsResponse(
            logs=logs.summary_entries(page), links=logs.page_links(page.links)
        )

    async def GetFunctionLogs(
        self, request: ingress_pb2.GetFunctionLogsRequest
    ) -> ingress_pb2.GetFunctionLogsResponse:
        page = await self._service.logs.run_logs(request.run_id, request.page, request.page_size)
        return ingress_pb2.GetFunctionLogsResponse(
            logs=logs.document_entries(page), links=logs.page_links(page.links)
        )

    async def ListErrorLogs(
        self, request: ingress_pb2.ListErrorLogsRequest
    ) -> ingress_pb2.ListErrorLogsResponse:
        page = await self._service.logs.errors(
            read_span(request.start_time, request.end_time), request.page, request.page_size
        )
        return ingress_pb2.ListErrorLogsResponse(
            logs=logs.document_entries(page), links=logs.page_links(page.links)
        )

    async def ListDeadLetters(
        self, request: ingress_pb2.ListDeadLettersRequest
    ) -> ingress_pb2.ListDeadLettersResponse:
        page = await self._service.logs.dead_letters(
            request.type,
            read_span(request.start_time, request.end_time),
            request.page,
            request.page_size,
        )
        return ingress_pb2.ListDeadLettersResponse(
            logs=logs.document_entries(page), links=logs.page_links(page.links)
        )

    async def TriggerSchedule(
        self, request: ingress_pb2.TriggerScheduleRequest
    ) -> ingress_pb2.TriggerScheduleResponse:
        event_id = await self._service.trigger_schedule(request.function_id)
        return ingress_pb2.TriggerScheduleResponse(ids=[event_id])

    async def BackfillSchedule(
        self, request: ingress_pb2.BackfillScheduleRequest
    ) -> ingress_pb2.BackfillScheduleResponse:
        stored = await self._service.backfill_schedule(
            request.function_id,
            messages.optional_time(request, "start"),
            messages.optional_time(request, "end"),
        )
        return ingress_pb2.BackfillScheduleResponse(
            ids=list(stored.event_ids), already_run=stored.already_run
        )
