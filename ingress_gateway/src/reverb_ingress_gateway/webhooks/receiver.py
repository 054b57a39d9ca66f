"""Receiving webhooks: a source's request verified, kept, and turned into one event.

`WebhookReceiver.receive` is the whole path of `POST /webhooks/{source}`: the source (404
if unknown), its preset's verification of the raw body (401, nothing stored), the event
built, and the delivery and its event stored by one statement (a delivery id seen before
answers the first event's id and stores nothing), which concurrent deliveries share
(`intake.GroupCommit`, as SendEvents does). Slack's `url_verification` challenge is
answered after verification and stores nothing.
"""

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import asyncpg

from reverb_ingress_gateway.errors import InvalidArgument, NotFound
from reverb_ingress_gateway.intake import GroupCommit
from reverb_ingress_gateway.webhooks import events
from reverb_ingress_gateway.webhooks.presets import Clock, Preset, Slack, preset, wall_clock
from reverb_ingress_gateway.webhooks.sources import DEFAULT_SOURCE, WebhookSource
from reverb_store import webhooks as store
from reverb_store.webhooks import Accepted, Delivery, DeliveryRecord, NewDelivery

# A group of deliveries stored by one statement: at most this many units of `_size`
# (4,096 small deliveries, or 16 MiB of bodies; a larger delivery is stored alone).
MAX_GROUP = 4096


def _size(item: NewDelivery) -> int:
    """One unit per delivery and per 4 KiB it sends (its body, and its event's data,
    which holds the body again)."""
    return 1 + (len(item.delivery.body) + len(item.event_data)) // 4096


@dataclass(frozen=True, slots=True)
class Received:
    """Ids of the event (one; the first delivery's for a redelivery), or Slack's challenge."""

    ids: list[str]
    challenge: str | None = None


@dataclass(frozen=True, slots=True)
class _Source:
    name: str
    settings: WebhookSource
    preset: Preset


class WebhookReceiver:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sources: Mapping[str, WebhookSource],
        *,
        acquire_timeout: float,
        clock: Clock = wall_clock,
        accepted: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        # Told of each event a delivery (or a replay) emitted, once it is committed.
        self._accepted = accepted or (lambda: None)
        self._timeout = acquire_timeout
        self._clock = clock
        configured = dict(sources)
        # POST /webhooks: an API key authenticates it; a configured preset is checked too.
        configured.setdefault(DEFAULT_SOURCE, WebhookSource(preset="open"))
        self._sources = {
            name: _Source(name, source, preset(source)) for name, source in configured.items()
        }
        self._deliveries: GroupCommit[NewDelivery, Accepted] = GroupCommit(
            pool,
            store.accept_deliveries,
            acquire_timeout=acquire_timeout,
            refused=lambda message: InvalidArgument(f"the delivery cannot be stored: {message}"),
            size=_size,
            max_batch=MAX_GROUP,
        )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire(timeout=self._timeout) as connection:
            yield cast(asyncpg.Connection, connection)

    def _source(self, name: str) -> _Source:
        source = self._sources.get(name)
        if source is None:
            raise NotFound(f"no webhook source {name!r} is configured")
        return source

    def check_source(self, name: str) -> None:
        """NotFound unless the source is configured."""
        self._source(name)

    async def receive(
        self,
        name: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        traceparent: str | None = None,
    ) -> Received:
        source = self._source(name)
        received = {key.lower(): value for key, value in headers}
        source.preset.verify(received, body, self._clock())
        document = events.parse(body)
        if (
            isinstance(source.preset, Slack)
            and isinstance(document, dict)
            and document.get("type") == "url_verification"
        ):
            return Received([], str(document.get("challenge", "")))
        delivery_id = source.preset.delivery_id(received, document)
        if delivery_id is not None and ("\x00" in delivery_id or len(delivery_id) > 256):
            raise InvalidArgument("the delivery id must be at most 256 characters, without NUL")
        kept = events.kept_headers(received.items(), source.preset.signature_headers)
        name_of_event = events.event_name(
            source.settings.event, source.preset.event_type(received, document)
        )
        data = events.event_data(name, kept, body, delivery_id, document is not None)
        delivery = Delivery(name, delivery_id, kept, body)
        accepted = await self._deliveries.submit(
            NewDelivery(delivery, name_of_event, data, traceparent)
        )
        self._accepted()
        return Received([accepted.event_id])

    async def list_deliveries(
        self, source: str | None, limit: int, before: str | None
    ) -> list[DeliveryRecord]:
        async with self._connection() as connection:
            return await store.list_deliveries(
                connection, source=source, limit=limit, before=before
            )

    async def replay(self, delivery: str, traceparent: str | None = None) -> str:
        """Emit the kept delivery's event again; the new event's id."""
        async with self._connection() as connection:
            record = await store.get_delivery(connection, delivery)
            if record is None:
                raise NotFound(f"no webhook delivery with id {delivery!r}")
            document = events.parse(record.body)
            data = events.event_data(
                record.source, record.headers, record.body, record.delivery_id, document is not None
            )
            event_id = await store.replay_delivery(connection, record, data, traceparent)
        self._accepted()
        return event_id
