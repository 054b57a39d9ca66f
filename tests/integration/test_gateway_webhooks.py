"""POST /webhooks/{source}: each preset's valid, invalid, missing, stale and replayed
signatures, non-JSON bodies, redelivery, the deliveries kept and replayed, and the body
limit, and that no secret, signature or API key is logged or stored; over a real socket
(and one real `reverb gateway` process), against a real PostgreSQL."""

import asyncio
import hashlib
import hmac
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import orjson
import pytest
import standardwebhooks
from pydantic import SecretStr

from reverb_contracts.v1 import ingress_pb2, ingress_pb2_grpc
from reverb_ingress_gateway import Gateway, GatewaySettings, start
from reverb_ingress_gateway.webhooks import WebhookSource
from reverb_store.control import create_api_key
from reverb_store.jobs import ProcessEvent
from tests import children
from tests.e2e.processes import eventually, free_port
from tests.integration.listeners import listen
from tests.integration.test_cli import assert_user_error, run_cli

GITHUB_SECRET = "gh-secret"
STRIPE_SECRET = "whsec_stripe-secret"
SLACK_SECRET = "slack-secret"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HMAC_SECRET = "hmac-secret"

SOURCES = {
    "gh": WebhookSource(preset="github", secret=SecretStr(GITHUB_SECRET), event="github.{type}"),
    "stripe": WebhookSource(preset="stripe", secret=SecretStr(STRIPE_SECRET), event="s.{type}"),
    "slack": WebhookSource(preset="slack", secret=SecretStr(SLACK_SECRET)),
    "svix": WebhookSource(preset="standard", secret=SecretStr(STANDARD_SECRET)),
    "signed": WebhookSource(
        preset="hmac-sha256",
        secret=SecretStr(HMAC_SECRET),
        header="X-Signature",
        delivery_header="X-Delivery",
    ),
    "anyone": WebhookSource(preset="open"),
}


def _settings(database_url: str, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "http_address": "127.0.0.1:0",
        "ingress_address": "127.0.0.1:0",
        "dev": True,
        "log_json": False,
        "webhooks": SOURCES,
        "database_pool_size": 4,
        **overrides,
    }
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[Gateway]:
    gateway = await start(_settings(database_url))
    yield gateway
    await gateway.stop()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def github(body: bytes, delivery: str = "d-1", secret: str = GITHUB_SECRET) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": delivery,
        "x-hub-signature-256": "sha256=" + _hex(secret, body),
        "x-hub-signature": "sha1=whatever",
    }


def stripe(body: bytes, at: float | None = None, secret: str = STRIPE_SECRET) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    signature = _hex(secret, f"{stamp}.".encode() + body)
    return {"content-type": "application/json", "stripe-signature": f"t={stamp},v1={signature}"}


def slack(body: bytes, at: float | None = None, secret: str = SLACK_SECRET) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {
        "content-type": "application/json",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": "v0=" + _hex(secret, f"v0:{stamp}:".encode() + body),
    }


def standard(
    body: bytes, at: float | None = None, secret: str = STANDARD_SECRET, message: str = "msg_1"
) -> dict[str, str]:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    signature = standardwebhooks.Webhook(secret).sign(message, moment, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": message,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def signed(body: bytes, delivery: str = "h-1", secret: str = HMAC_SECRET) -> dict[str, str]:
    return {"x-signature": _hex(secret, body), "x-delivery": delivery}


async def _events(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    return await connection.fetch("SELECT id, name, data FROM reverb.events ORDER BY received_at")


async def _stored(connection: asyncpg.Connection) -> tuple[int, int]:
    events = await connection.fetchval("SELECT count(*) FROM reverb.events")
    deliveries = await connection.fetchval("SELECT count(*) FROM reverb.webhook_deliveries")
    return events, deliveries


async def _post(
    client: httpx.AsyncClient, source: str, body: bytes, headers: Mapping[str, str]
) -> httpx.Response:
    return await client.post(f"/webhooks/{source}", content=body, headers=dict(headers))


PUSH = orjson.dumps({"ref": "refs/heads/main", "size": 12345678901234567890})
CHARGE = orjson.dumps({"id": "evt_1", "type": "charge.succeeded", "data": {"amount": 5}})
SLACK_EVENT = orjson.dumps({"type": "event_callback", "event_id": "Ev1", "event": {"type": "x"}})
STANDARD_EVENT = orjson.dumps({"type": "invoice.paid", "data": {"n": 1}})

# (source, a valid body, sign(body) for valid headers, its event's name, its delivery id)
CASES: list[tuple[str, bytes, Callable[[bytes], dict[str, str]], str, str]] = [
    ("gh", PUSH, github, "github.push", "d-1"),
    ("stripe", CHARGE, stripe, "s.charge.succeeded", "evt_1"),
    ("slack", SLACK_EVENT, slack, "reverb-received-webhook", "Ev1"),
    ("svix", STANDARD_EVENT, standard, "reverb-received-webhook", "msg_1"),
    ("signed", b"a=1&b=2", signed, "reverb-received-webhook", "h-1"),
]
IDS = [case[0] for case in CASES]

# The signature headers each preset reads: removed to test a missing signature.
SIGNATURE_HEADERS = {
    "gh": ["x-hub-signature-256"],
    "stripe": ["stripe-signature"],
    "slack": ["x-slack-signature"],
    "svix": ["webhook-signature"],
    "signed": ["x-signature"],
}
WRONG_SECRETS: dict[str, Callable[[bytes], dict[str, str]]] = {
    "gh": lambda body: github(body, secret="wrong"),
    "stripe": lambda body: stripe(body, secret="whsec_wrong"),
    "slack": lambda body: slack(body, secret="wrong"),
    "svix": lambda body: standard(body, secret="whsec_d3Jvbmc="),
    "signed": lambda body: signed(body, secret="wrong"),
}


@pytest.mark.parametrize(("source", "body", "sign", "name", "delivery"), CASES, ids=IDS)
async def test_a_valid_signature_stores_one_event(
    client: httpx.AsyncClient,
    connection: asyncpg.Connection,
    source: str,
    body: bytes,
    sign: Callable[[bytes], dict[str, str]],
    name: str,
    delivery: str,
) -> None:
    await listen(connection, name)
    answer = await _post(client, source, body, sign(body))
    assert answer.status_code == 202, answer.text
    [event_id] = answer.json()["ids"]
    [event] = await _events(connection)
    assert (event["id"], event["name"]) == (event_id, name)
    data: dict[str, Any] = orjson.loads(event["data"])
    assert data["source"] == source
    assert data["delivery_id"] == delivery
    parsed = orjson.loads(body) if source != "signed" else None
    assert data["webhook"] == (parsed if parsed is not None else "a=1&b=2")
    # Provider headers are kept, lower-cased; signatures and transport headers are not.
    headers = data["headers"]
    assert not set(headers) & {"x-hub-signature-256", "x-hub-signature", "stripe-signature"}
    assert not set(headers) & {"x-slack-signature", "webhook-signature", "x-signature"}
    assert "host" not in headers and "content-length" not in headers
    if source == "gh":
        assert headers["x-github-event"] == "push"
        assert headers["x-github-delivery"] == "d-1"
        # Numbers keep every digit: the body's own bytes are stored, not a float.
        assert '"size": 12345678901234567890' in event["data"]
    # The fan-out job of the event.
    payload = await connection.fetchval("SELECT payload FROM pgqueuer")
    assert ProcessEvent.decode(payload).event_ids == (event_id,)


@pytest.mark.parametrize(("source", "body", "sign", "name", "delivery"), CASES, ids=IDS)
async def test_a_bad_or_missing_signature_is_401_and_stores_nothing(
    client: httpx.AsyncClient,
    connection: asyncpg.Connection,
    source: str,
    body: bytes,
    sign: Callable[[bytes], dict[str, str]],
    name: str,
    delivery: str,
) -> None:
    tampered = body.replace(b"1", b"2")
    answers = [
        await _post(client, source, tampered, sign(body)),  # the body changed
        await _post(client, source, body, WRONG_SECRETS[source](body)),  # another secret
    ]
    missing = sign(body)
    for header in SIGNATURE_HEADERS[source]:
        del missing[header]
    answers.append(await _post(client, source, body, missing))
    answers.append(await _post(client, source, body, {}))
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthenticated"
        assert "secret" not in answer.text
    assert await _stored(connection) == (0, 0)


@pytest.mark.parametrize(
    ("source", "sign"),
    [("stripe", stripe), ("slack", slack), ("svix", standard)],
    ids=["stripe", "slack", "svix"],
)
async def test_a_stale_signature_is_401(
    client: httpx.AsyncClient,
    connection: asyncpg.Connection,
    source: str,
    sign: Callable[..., dict[str, str]],
) -> None:
    body = CHARGE
    stale = await _post(client, source, body, sign(body, at=time.time() - 6 * 60))
    early = await _post(client, source, body, sign(body, at=time.time() + 6 * 60))
    assert (stale.status_code, early.status_code) == (401, 401), stale.text
    assert await _stored(connection) == (0, 0)


@pytest.mark.parametrize(("source", "body", "sign", "name", "delivery"), CASES, ids=IDS)
async def test_a_replayed_request_is_the_first_delivery(
    client: httpx.AsyncClient,
    connection: asyncpg.Connection,
    source: str,
    body: bytes,
    sign: Callable[[bytes], dict[str, str]],
    name: str,
    delivery: str,
) -> None:
    headers = sign(body)
    first = await _post(client, source, body, headers)
    again = await _post(client, source, body, headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert await _stored(connection) == (1, 1)


async def test_a_redelivery_with_a_new_signature_is_answered_with_the_first_id(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    """GitHub's redelivery: the same delivery id, sent again later."""
    first = await _post(client, "gh", PUSH, github(PUSH))
    body = PUSH + b" "
    again = await _post(client, "gh", body, github(body))
    other = await _post(client, "gh", PUSH, github(PUSH, delivery="d-2"))
    assert again.json() == first.json()
    assert other.json() != first.json()
    assert await _stored(connection) == (2, 2)


async def test_non_json_bodies_become_text(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    bodies = [b"payload=%7B%22a%22%3A1%7D", b"not json {", "héllo".encode(), b"\xff\x00x", b""]
    for index, body in enumerate(bodies):
        headers = github(body, delivery=f"n-{index}")
        headers["content-type"] = "application/x-www-form-urlencoded"
        answer = await _post(client, "gh", body, headers)
        assert answer.status_code == 202, answer.text
    webhooks = [orjson.loads(row["data"])["webhook"] for row in await _events(connection)]
    assert webhooks == [
        body.decode("utf-8", "replace").replace("\x00", "\ufffd") for body in bodies
    ]
    # The raw request is kept byte for byte.
    kept = await connection.fetch("SELECT body FROM reverb.webhook_deliveries ORDER BY id")
    assert [bytes(row["body"]) for row in kept] == bodies


async def test_an_open_source_takes_anything_and_an_unknown_one_is_404(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    opened = await _post(client, "anyone", b"[1, 2]", {"content-type": "text/plain"})
    assert opened.status_code == 202
    unknown = await _post(client, "nobody", PUSH, github(PUSH))
    upper = await _post(client, "GH", PUSH, github(PUSH))
    for answer in (unknown, upper):
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
    [event] = await _events(connection)
    assert orjson.loads(event["data"])["webhook"] == [1, 2]


async def test_slack_url_verification_is_answered_and_stores_nothing(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    body = orjson.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2"})
    answer = await _post(client, "slack", body, slack(body))
    assert answer.status_code == 200
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2"}
    forged = await _post(client, "slack", body, slack(body, secret="wrong"))
    assert forged.status_code == 401
    assert await _stored(connection) == (0, 0)


async def test_deliveries_are_listed_by_page_and_replayed(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    await listen(connection, "github.push")
    firsts = []
    for index in range(3):
        answer = await _post(client, "gh", PUSH, github(PUSH, delivery=f"p-{index}"))
        firsts.append(answer.json()["ids"][0])
    await _post(client, "anyone", b"x", {})

    page = (await client.get("/webhooks/deliveries", params={"source": "gh", "limit": 2})).json()
    assert [item["event_id"] for item in page["deliveries"]] == firsts[:0:-1]
    rest = await client.get(
        "/webhooks/deliveries", params={"source": "gh", "cursor": page["next_cursor"]}
    )
    assert [item["event_id"] for item in rest.json()["deliveries"]] == firsts[:1]
    assert rest.json()["next_cursor"] is None
    everything = (await client.get("/webhooks/deliveries")).json()["deliveries"]
    assert [item["source"] for item in everything] == ["anyone", "gh", "gh", "gh"]

    kept = page["deliveries"][0]
    assert kept["delivery_id"] == "p-2"
    assert kept["event_name"] == "github.push"
    assert kept["body_bytes"] == len(PUSH)
    assert kept["headers"]["x-github-event"] == "push"
    assert "x-hub-signature-256" not in kept["headers"]

    replayed = await client.post(f"/webhooks/deliveries/{kept['id']}/replay")
    assert replayed.status_code == 202, replayed.text
    [new_id] = replayed.json()["ids"]
    assert new_id not in firsts
    original, copy = await connection.fetch(
        "SELECT name, data FROM reverb.events WHERE id = ANY($1) ORDER BY received_at",
        [firsts[2], new_id],
    )
    assert (copy["name"], orjson.loads(copy["data"])) == (
        original["name"],
        orjson.loads(original["data"]),
    )
    jobs = await connection.fetch("SELECT payload FROM pgqueuer ORDER BY id")
    assert ProcessEvent.decode(jobs[-1]["payload"]).event_ids == (new_id,)

    missing = await client.post("/webhooks/deliveries/nope/replay")
    assert missing.status_code == 404
    bad_cursor = await client.get("/webhooks/deliveries", params={"cursor": "nope"})
    assert bad_cursor.status_code == 400


async def test_nothing_secret_is_stored(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    headers = {**github(PUSH), "authorization": "Bearer rvb_secret", "cookie": "session=1"}
    await _post(client, "gh", PUSH, headers)
    stored = await connection.fetchval(
        "SELECT headers::text || convert_from(body, 'UTF8') FROM reverb.webhook_deliveries"
    )
    event = await connection.fetchval("SELECT data::text FROM reverb.events")
    for text in (stored, event):
        assert "rvb_secret" not in text and "session=1" not in text
        assert headers["x-hub-signature-256"].split("=")[1] not in text


async def test_a_body_over_the_limit_is_413(
    database_url: str, connection: asyncpg.Connection
) -> None:
    gateway = await start(_settings(database_url, webhook_max_body_bytes=1024))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
            body = b"x" * 1025
            declared = await _post(client, "gh", body, github(body))

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(3):
                    yield b"y" * 512

            streamed = await client.post(
                "/webhooks/gh", content=chunks(), headers=github(b"y" * 1536)
            )
            fits = await _post(client, "gh", b"z" * 1024, github(b"z" * 1024))
    finally:
        await gateway.stop()
    assert (declared.status_code, streamed.status_code, fits.status_code) == (413, 413, 202)
    assert declared.json()["error"]["code"] == "payload_too_large"
    assert await _stored(connection) == (1, 1)


async def test_the_default_source_needs_an_ingest_key(
    database_url: str, connection: asyncpg.Connection
) -> None:
    gateway = await start(_settings(database_url, dev=False))
    ingest = (await create_api_key(connection, "ingest", ("ingest",)))[1]
    reader = (await create_api_key(connection, "reader", ("read",)))[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
            anonymous = await client.post("/webhooks", content=b"{}")
            wrong = await client.post(
                "/webhooks", content=b"{}", headers={"authorization": f"Bearer {reader}"}
            )
            right = await client.post(
                "/webhooks",
                content=b'{"a": 1}',
                headers={"authorization": f"Bearer {ingest}", "content-type": "text/plain"},
            )
            # A signed source needs no key; listing needs one.
            signed_source = await _post(client, "gh", PUSH, github(PUSH))
            listing = await client.get("/webhooks/deliveries")
    finally:
        await gateway.stop()
    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 403, 202)
    assert (signed_source.status_code, listing.status_code) == (202, 401)
    event = await connection.fetchval(
        "SELECT data FROM reverb.events WHERE id = $1", right.json()["ids"][0]
    )
    data = orjson.loads(event)
    assert (data["source"], data["webhook"], data["delivery_id"]) == ("default", {"a": 1}, None)
    assert "authorization" not in data["headers"]


async def test_deliveries_are_listed_and_replayed_over_grpc(
    gateway: Gateway, client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    first = (await _post(client, "gh", PUSH, github(PUSH))).json()["ids"][0]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        stub = ingress_pb2_grpc.IngressStub(channel)
        listed = await stub.ListWebhookDeliveries(
            ingress_pb2.ListWebhookDeliveriesRequest(source="gh")
        )
        [delivery] = listed.deliveries
        assert (delivery.event_id, delivery.delivery_id) == (first, "d-1")
        replayed = await stub.ReplayWebhookDelivery(
            ingress_pb2.ReplayWebhookDeliveryRequest(id=delivery.id)
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.ReplayWebhookDelivery(ingress_pb2.ReplayWebhookDeliveryRequest(id="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    [again] = replayed.ids
    assert again != first
    assert await _stored(connection) == (2, 1)


async def _with_deliveries_locked(
    connection: asyncpg.Connection, requests: list[asyncio.Task[httpx.Response]]
) -> list[httpx.Response]:
    """Hold the deliveries' table locked until a committer waits on it (the other
    requests queue meanwhile), then let everything through."""
    async with connection.transaction():
        await connection.execute("LOCK TABLE reverb.webhook_deliveries IN EXCLUSIVE MODE")
        # PostgreSQL signals nothing when a backend starts waiting for a lock: poll.
        async with asyncio.timeout(20):
            while not await connection.fetchval(  # noqa: ASYNC110
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                await asyncio.sleep(0.01)
    return list(await asyncio.gather(*requests))


async def _largest_transaction(connection: asyncpg.Connection) -> int:
    return int(
        await connection.fetchval(
            "SELECT max(rows) FROM (SELECT count(*) AS rows FROM reverb.webhook_deliveries"
            " GROUP BY xmin::text) AS t"
        )
    )


async def test_concurrent_deliveries_share_transactions_and_a_repeated_id_is_stored_once(
    gateway: Gateway, connection: asyncpg.Connection
) -> None:
    """Deliveries arriving together are group-committed (as POST /events is): each still
    gets its own event, fan-out job and trace, and one delivery id sent by several of
    them at once is stored once and answered with the same event id."""
    await listen(connection, "github.push")

    def traceparent(index: int) -> str:
        return f"00-{index + 1:032x}-{index + 1:016x}-01"

    bodies = [orjson.dumps({"n": index}) for index in range(20)]
    repeated = orjson.dumps({"n": "again"})
    limits = httpx.Limits(max_connections=100)
    url = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        requests = [
            asyncio.create_task(
                _post(
                    client,
                    "gh",
                    body,
                    {**github(body, delivery=f"d-{index}"), "traceparent": traceparent(index)},
                )
            )
            for index, body in enumerate(bodies)
        ] + [
            asyncio.create_task(_post(client, "gh", repeated, github(repeated, "d-again")))
            for _ in range(6)
        ]
        responses = await _with_deliveries_locked(connection, requests)

    assert {response.status_code for response in responses} == {202}
    ids = [response.json()["ids"][0] for response in responses]
    assert len(set(ids[:20])) == 20
    assert len(set(ids[20:])) == 1 and ids[20] not in ids[:20]
    assert await _stored(connection) == (21, 21)
    # Fewer transactions than deliveries: their rows share creating transactions.
    transactions = await connection.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM reverb.webhook_deliveries"
    )
    assert transactions < 21
    # Each event's own fan-out job, with its own request's trace.
    rows = await connection.fetch("SELECT payload FROM pgqueuer WHERE entrypoint = 'process_event'")
    jobs = {
        ProcessEvent.decode(row["payload"]).event_ids[0]: ProcessEvent.decode(row["payload"])
        for row in rows
    }
    assert set(jobs) == set(ids)
    for index, event_id in enumerate(ids[:20]):
        trace = jobs[event_id].traceparent
        assert trace is not None and trace.split("-")[1] == f"{index + 1:032x}"


async def test_large_deliveries_are_grouped_up_to_a_size(
    gateway: Gateway, connection: asyncpg.Connection
) -> None:
    """A group's statement carries at most 16 MiB or so: 2 MiB deliveries (each sending
    its body twice, as the delivery and in its event) go three to a transaction."""
    bodies = [orjson.dumps({"n": index, "pad": "x" * (2 << 20)}) for index in range(12)]
    limits = httpx.Limits(max_connections=100)
    url = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        requests = [
            asyncio.create_task(_post(client, "gh", body, github(body, delivery=f"big-{index}")))
            for index, body in enumerate(bodies)
        ]
        responses = await _with_deliveries_locked(connection, requests)
    assert {response.status_code for response in responses} == {202}
    assert await _stored(connection) == (12, 12)
    assert await _largest_transaction(connection) <= 3


# Distinctive values: any of them in a log line would be a leak, not a coincidence.
LOGGED_SECRET = "gh-secret-never-logged-5c1f0e"


async def test_nothing_secret_is_logged(
    database_url: str, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    """A real `reverb gateway` process at debug level, JSON logs, a github source
    configured through the environment: valid, forged, unsigned and redelivered
    deliveries, and POST /webhooks with a right, a wrong and an unknown API key. Neither
    the secret, a signature header's value nor a key is in its output, in an event or in
    a stored delivery."""
    ingest = (await create_api_key(connection, "ingest", ("ingest",)))[1]
    reader = (await create_api_key(connection, "reader", ("read",)))[1]
    unknown = "rvb_" + "u" * 43
    http_port = free_port()
    clean = {key: value for key, value in os.environ.items() if not key.startswith("REVERB_")}
    env = {
        **clean,
        "REVERB_DATABASE_URL": database_url,
        "REVERB_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
        "REVERB_INGRESS_ADDRESS": f"127.0.0.1:{free_port()}",
        "REVERB_LOG_LEVEL": "debug",
        "REVERB_LOG_JSON": "true",
        "REVERB_WEBHOOKS__GH__PRESET": "github",
        "REVERB_WEBHOOKS__GH__SECRET": LOGGED_SECRET,
        "REVERB_WEBHOOKS__GH__EVENT": "github.{type}",
    }
    log = tmp_path / "gateway.log"
    signatures: list[str] = []
    answers: list[int] = []
    with log.open("wb") as sink:
        gateway = await children.spawn(
            sys.executable, "-m", "reverb_cli", "gateway", env=env, stdout=sink, stderr=sink
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:

            async def healthy() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, within=20, what="the gateway to answer /healthz")
            valid = github(PUSH, secret=LOGGED_SECRET)
            forged = github(PUSH, delivery="d-2")
            unsigned = {
                k: v for k, v in github(PUSH, delivery="d-3").items() if "signature" not in k
            }
            tampered = github(PUSH, delivery="d-4", secret=LOGGED_SECRET)
            for headers in (valid, forged, tampered):
                signatures += [headers["x-hub-signature-256"], headers["x-hub-signature"]]
            redelivered = {**valid, "authorization": f"Bearer {ingest}"}
            for body, headers in (
                (PUSH, valid),
                (PUSH, forged),
                (PUSH, unsigned),
                (PUSH.replace(b"main", b"evil"), tampered),
                (PUSH, redelivered),
            ):
                answers.append((await _post(client, "gh", body, headers)).status_code)
            for key in (ingest, reader, unknown):
                answer = await client.post(
                    "/webhooks",
                    content=b'{"a": 1}',
                    headers={
                        "authorization": f"Bearer {key}",
                        "content-type": "application/json",
                        "x-api-key": key,
                    },
                )
                answers.append(answer.status_code)
            listing = await client.get(
                "/webhooks/deliveries", headers={"authorization": f"Bearer {reader}"}
            )
            assert listing.status_code == 200, listing.text
    finally:
        gateway.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(gateway.wait(), 15)
    assert code == 0, log.read_text()
    assert answers == [202, 401, 401, 401, 202, 202, 403, 401]

    output = log.read_text()
    # The log was written (the capture works) and the service logged at debug level.
    assert '"event":"gateway started"' in output and '"event":"gateway stopped"' in output
    stored = await connection.fetch(
        "SELECT headers::text || convert_from(body, 'UTF8') AS text"
        " FROM reverb.webhook_deliveries"
        " UNION ALL SELECT data::text FROM reverb.events"
    )
    assert len(stored) == 4  # one delivery and one event per source (the redelivery is one)
    secrets = [LOGGED_SECRET, ingest, reader, unknown, *signatures]
    # A signature's hex, without its `sha256=` prefix, would be a leak too.
    secrets += [signature.split("=", 1)[1] for signature in signatures]
    for text in (output, *(row["text"] for row in stored)):
        for secret in secrets:
            assert secret not in text
    for row in await connection.fetch("SELECT headers FROM reverb.webhook_deliveries"):
        kept = set(orjson.loads(row["headers"]))
        assert not kept & {"x-hub-signature-256", "x-hub-signature", "authorization", "x-api-key"}


async def test_a_webhook_configuration_error_does_not_repeat_the_secret() -> None:
    env = {
        "REVERB_DATABASE_URL": "postgresql://127.0.0.1/reverb",
        "REVERB_WEBHOOKS__SIGNED__PRESET": "hmac-sha256",  # no HEADER: an error
        "REVERB_WEBHOOKS__SIGNED__SECRET": LOGGED_SECRET,
    }
    result = await run_cli("gateway", env=env)
    assert_user_error(result, "the hmac-sha256 preset needs a HEADER", 2)
    assert LOGGED_SECRET not in result.stderr + result.stdout
