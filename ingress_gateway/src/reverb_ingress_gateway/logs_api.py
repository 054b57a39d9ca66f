"""Reverb's logs API, kept and fixed (README "Logs API"): domain types in and out.

The routes' answers are Reverb's shape: a list of items, each a document under the key
that says what it is about ("event", "function" or "error") with its links, and the
page's own links. Unlike the original: an empty page, or one past the end, is an empty
200 without `next`; a bad cursor, time, limit, page or type is a 400; every link points
at the route that answered (with the same filters); the order is (timestamp, id), the
same on every sink; and nothing a caller sends makes it answer 500.
"""

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast
from urllib.parse import quote, urlencode

import asyncpg
import orjson

from reverb_ingress_gateway import validation
from reverb_ingress_gateway.errors import InvalidArgument, NotFound
from reverb_store.logs import (
    DEAD_LETTERS,
    EVENT_DEAD_LETTERED,
    EVENT_RECEIVED,
    LEVELS,
    Level,
    LogDocument,
    LogQuery,
    LogReader,
    LogViews,
    Position,
)
from reverb_store.logs.summaries import (
    RunSummary,
    SummaryQuery,
    event_exists,
    run_exists,
    run_summaries,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# The event logs of /logs/events.
EVENT_KINDS = (EVENT_RECEIVED, EVENT_DEAD_LETTERED)

About = Literal["event", "function", "error"]


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    about: About
    document: LogDocument
    links: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PageLinks:
    self: str
    previous: str | None = None
    next: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentPage:
    entries: Sequence[DocumentEntry]
    links: PageLinks
    # /logs only: the position after the last document.
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SummaryPage:
    summaries: Sequence[RunSummary]
    links: PageLinks


@dataclass(frozen=True, slots=True)
class Span:
    """startTime / endTime as given (the text, for links) and read."""

    start_text: str
    end_text: str
    start: datetime | None
    end: datetime | None


def read_time(text: str, name: str) -> datetime | None:
    """An RFC 3339 time (a time without a zone is UTC); InvalidArgument otherwise."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidArgument(
            f"{name} must be an RFC 3339 time such as 2026-12-02T07:00:00Z, not {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidArgument(f"{name} is out of range") from None


def read_span(start_text: str, end_text: str) -> Span:
    start = read_time(start_text, "startTime")
    end = read_time(end_text, "endTime")
    if start is not None and end is not None and end < start:
        raise InvalidArgument("endTime must not be before startTime")
    return Span(start_text, end_text, start, end)


def cursor_text(position: Position) -> str:
    value = orjson.dumps(["log", position.timestamp.isoformat(), f"{position.id:016x}"])
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


def read_cursor(text: str) -> Position | None:
    if not text:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        kind, at, log_id = value
        if kind != "log" or not isinstance(at, str) or not isinstance(log_id, str):
            raise ValueError(kind)
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or len(log_id) != 16:
            raise ValueError(at)
        return Position(moment.astimezone(UTC), int(log_id, 16))
    except (binascii.Error, ValueError, TypeError, OverflowError):
        raise InvalidArgument("invalid cursor: pass back a cursor the API answered") from None


def about(document: LogDocument) -> About:
    if document.level == "error":
        return "error"
    return "function" if document.run_id is not None else "event"


def document_links(document: LogDocument) -> dict[str, str]:
    links: dict[str, str] = {}
    if document.event_id is not None:
        links["event"] = f"/logs/events/{quote(document.event_id, safe='')}"
    if document.run_id is not None:
        run = quote(document.run_id, safe="")
        links["function"] = f"/logs/functions/{run}"
        links["run"] = f"/runs/{run}"
    return links


def link(path: str, parameters: Sequence[tuple[str, str | int | None]]) -> str:
    given = [(key, str(value)) for key, value in parameters if value not in (None, "")]
    return f"{path}?{urlencode(given)}" if given else path


def _limit(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("limit must be at least 1")
    return min(requested or DEFAULT_LIMIT, MAX_LIMIT)


def _page(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page must be at least 1")
    return requested or 1


def _level(text: str) -> Level | None:
    if not text:
        return None
    if text not in LEVELS:
        raise InvalidArgument(f"unknown level {text!r}; one of: {', '.join(LEVELS)}")
    return text


def _pages(
    path: str, filters: Sequence[tuple[str, str | int | None]], page: int, limit: int, more: bool
) -> PageLinks:
    def at(number: int) -> str:
        return link(path, [*filters, ("page", number), ("limit", limit)])

    return PageLinks(
        self=at(page),
        previous=at(page - 1) if page > 1 else None,
        next=at(page + 1) if more else None,
    )


class LogsApi:
    """The logs routes' reads, on the sink's documents (`views`) and reverb.runs (`pool`)."""

    def __init__(
        self,
        reader: LogReader | None,
        pool: asyncpg.Pool,
        *,
        derive_steps: bool,
        database_timeout: float,
    ) -> None:
        self._reader = reader
        self._views = LogViews(reader, pool, derive_steps=derive_steps)
        self._pool = pool
        self._timeout = database_timeout

    async def close(self) -> None:
        """Close the reader's own client (MongoDB's; PostgreSQL's pool is the gateway's)."""
        close = getattr(self._reader, "close", None)
        if close is not None:
            await close()

    async def list_logs(
        self, cursor: str, span: Span, limit: int, level: str, run_id: str
    ) -> DocumentPage:
        size = _limit(limit)
        after = read_cursor(cursor)
        validation.check_text(run_id, "run")
        query = LogQuery(
            limit=size + 1,
            after=after,
            start=span.start,
            end=span.end,
            level=_level(level),
            run_id=run_id or None,
        )
        found = await self._views.find(query)
        page = found[:size]
        filters: list[tuple[str, str | int | None]] = [
            ("startTime", span.start_text),
            ("endTime", span.end_text),
            ("level", level),
            ("run", run_id),
        ]
        position = (
            cursor_text(Position(page[-1].timestamp, page[-1].id)) if page else cursor or None
        )
        links = PageLinks(
            self=link("/logs", [("cursor", cursor), *filters, ("limit", size)]),
            next=link("/logs", [("cursor", position), *filters, ("limit", size)])
            if len(found) > size
            else None,
        )
        return DocumentPage(_entries(page), links, position)

    async def _documents(
        self,
        path: str,
        filters: Sequence[tuple[str, str | int | None]],
        query: LogQuery,
        page: int,
        limit: int,
    ) -> DocumentPage:
        size, number = _limit(limit), _page(page)
        found = await self._views.find(
            LogQuery(
                limit=size + 1,
                offset=(number - 1) * size,
                start=query.start,
                end=query.end,
                run_id=query.run_id,
                level=query.level,
                kinds=query.kinds,
                event_name=query.event_name,
            )
        )
        return DocumentPage(
            _entries(found[:size]), _pages(path, filters, number, size, len(found) > size)
        )

    async def event_logs(self, name: str, span: Span, page: int, limit: int) -> DocumentPage:
        validation.check_text(name, "name")
        query = LogQuery(
            limit=0, start=span.start, end=span.end, kinds=EVENT_KINDS, event_name=name or None
        )
        filters = _span_filters(span, [("name", name)])
        return await self._documents("/logs/events", filters, query, page, limit)

    async def errors(self, span: Span, page: int, limit: int) -> DocumentPage:
        query = LogQuery(limit=0, start=span.start, end=span.end, level="error")
        return await self._documents("/logs/errors", _span_filters(span, []), query, page, limit)

    async def dead_letters(self, kind: str, span: Span, page: int, limit: int) -> DocumentPage:
        kinds = DEAD_LETTERS.get(kind or "all")
        if kinds is None:
            raise InvalidArgument(f"unknown type {kind[:40]!r}; one of: event, function, all")
        query = LogQuery(limit=0, start=span.start, end=span.end, kinds=kinds)
        filters = _span_filters(span, [("type", kind)])
        return await self._documents("/logs/dead-letter", filters, query, page, limit)

    async def run_logs(self, run_id: str, page: int, limit: int) -> DocumentPage:
        validation.check_text(run_id, "run_id")
        if not run_id:
            raise InvalidArgument("run_id must not be empty")
        size, number = _limit(limit), _page(page)
        async with self._pool.acquire(timeout=self._timeout) as connection:
            if not await run_exists(cast(asyncpg.Connection, connection), run_id):
                raise NotFound(f"no run with id {run_id!r}")
        path = f"/logs/functions/{quote(run_id, safe='')}"
        return await self._documents(path, [], LogQuery(limit=0, run_id=run_id), number, size)

    async def _summaries(
        self,
        path: str,
        filters: Sequence[tuple[str, str | int | None]],
        query: SummaryQuery,
        page: int,
        limit: int,
    ) -> SummaryPage:
        size, number = _limit(limit), _page(page)
        async with self._pool.acquire(timeout=self._timeout) as connection:
            found = await run_summaries(
                cast(asyncpg.Connection, connection),
                SummaryQuery(
                    limit=size + 1,
                    offset=(number - 1) * size,
                    event_id=query.event_id,
                    function_id=query.function_id,
                    function_name=query.function_name,
                    start=query.start,
                    end=query.end,
                ),
            )
        return SummaryPage(found[:size], _pages(path, filters, number, size, len(found) > size))

    async def functions(
        self, name: str, function_id: str, span: Span, page: int, limit: int
    ) -> SummaryPage:
        validation.check_text(name, "name")
        validation.check_text(function_id, "id")
        query = SummaryQuery(
            limit=0,
            function_id=function_id or None,
            function_name=name or None,
            start=span.start,
            end=span.end,
        )
        filters = _span_filters(span, [("name", name), ("id", function_id)])
        return await self._summaries("/logs/functions", filters, query, page, limit)

    async def event_runs(self, event_id: str, page: int, limit: int) -> SummaryPage:
        validation.check_text(event_id, "event_id")
        if not event_id:
            raise InvalidArgument("event_id must not be empty")
        async with self._pool.acquire(timeout=self._timeout) as connection:
            if not await event_exists(cast(asyncpg.Connection, connection), event_id):
                raise NotFound(f"no event with id {event_id!r}")
        path = f"/logs/events/{quote(event_id, safe='')}"
        return await self._summaries(
            path, [], SummaryQuery(limit=0, event_id=event_id), page, limit
        )


def _span_filters(
    span: Span, filters: list[tuple[str, str | int | None]]
) -> list[tuple[str, str | int | None]]:
    return [*filters, ("startTime", span.start_text), ("endTime", span.end_text)]


def _entries(documents: Sequence[LogDocument]) -> list[DocumentEntry]:
    return [DocumentEntry(about(d), d, document_links(d)) for d in documents]
