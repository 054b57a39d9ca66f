"""reverb.v1 log messages ⇄ the logs API's domain types (`logs_api`)."""

from collections.abc import Mapping

import orjson

from reverb_contracts.v1 import common_pb2, ingress_pb2
from reverb_ingress_gateway.logs_api import DocumentEntry, DocumentPage, PageLinks, SummaryPage
from reverb_ingress_gateway.wire.messages import RUN_STATUSES, timestamp
from reverb_store.logs import LogDocument, show_id
from reverb_store.logs.summaries import RunSummary


def log_document(document: LogDocument) -> ingress_pb2.LogDocument:
    error = document.error
    meta = ingress_pb2.LogMeta(
        event_id=document.event_id,
        event_name=document.event_name,
        run_id=document.run_id,
        function_id=document.function_id,
        step_id=document.step_id,
        attempt=document.attempt,
        error=None
        if error is None
        else common_pb2.ErrorInfo(type=error.type, message=error.message, stack=error.stack),
    )
    fields = b"" if document.fields is None else orjson.dumps(orjson.loads(document.fields))
    return ingress_pb2.LogDocument(
        id=show_id(document.id),
        timestamp=timestamp(document.timestamp),
        level=document.level,
        kind=document.kind,
        message=document.message,
        meta=meta,
        trace_id=document.trace_id,
        span_id=document.span_id,
        fields=fields,
    )


def _links(links: Mapping[str, str]) -> ingress_pb2.LogLinks:
    return ingress_pb2.LogLinks(
        event=links.get("event"), function=links.get("function"), run=links.get("run")
    )


def log_entry(entry: DocumentEntry) -> ingress_pb2.LogEntry:
    message = ingress_pb2.LogEntry(links=_links(entry.links))
    getattr(message, entry.about).CopyFrom(log_document(entry.document))
    return message


def page_links(links: PageLinks) -> ingress_pb2.PageLinks:
    return ingress_pb2.PageLinks(self=links.self, previous=links.previous, next=links.next)


def list_logs_response(page: DocumentPage) -> ingress_pb2.ListLogsResponse:
    return ingress_pb2.ListLogsResponse(
        logs=[log_entry(entry) for entry in page.entries],
        links=page_links(page.links),
        cursor=page.cursor,
    )


def document_entries(page: DocumentPage) -> list[ingress_pb2.LogEntry]:
    return [log_entry(entry) for entry in page.entries]


def summary_entry(summary: RunSummary) -> ingress_pb2.RunSummaryEntry:
    return ingress_pb2.RunSummaryEntry(
        function=ingress_pb2.RunSummary(
            run_id=summary.run_id,
            function_id=summary.function_id,
            status=RUN_STATUSES.get(
                summary.status,  # type: ignore[call-overload]
                ingress_pb2.RUN_STATUS_UNSPECIFIED,
            ),
            invoked=timestamp(summary.invoked),
            last_update=timestamp(summary.last_update),
        ),
        links=ingress_pb2.RunSummaryLinks(
            logs=f"/logs/functions/{summary.run_id}", run=f"/runs/{summary.run_id}"
        ),
    )


def summary_entries(page: SummaryPage) -> list[ingress_pb2.RunSummaryEntry]:
    return [summary_entry(summary) for summary in page.summaries]
