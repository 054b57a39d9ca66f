"""A bounded schemathesis run against the gateway's own OpenAPI document.

A real gateway in production mode (API keys on) serves a database with an app,
events, runs and steps in it; schemathesis reads /openapi.json, generates
requests from it (a fixed seed, a fixed number of examples per operation) and
checks every answer: no 5xx, and status, content type, headers and body as the
document says. Run it with `make fuzz` (CI does); it is left out of the default
`pytest` run by its marker. A finding prints schemathesis's report, with a
`curl` line that reproduces it.
"""

import os
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from reverb_ingress_gateway import Gateway, GatewaySettings, start
from reverb_store import new_id
from reverb_store.control import (
    AppDefinition,
    FunctionDefinition,
    HostLease,
    TriggerDefinition,
    create_api_key,
    register_app,
)
from tests import children

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(600)]

# Fixed, so that a run is repeatable; change them to explore further.
SEED = 20261202
MAX_EXAMPLES = int(os.environ.get("REVERB_FUZZ_EXAMPLES", "60"))
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
)
_SCHEMATHESIS = Path(sys.executable).with_name("st")
_T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def _seed(connection: asyncpg.Connection) -> None:
    """Records for every response shape: functions with both kinds of trigger, runs in each
    status with steps, a failed run with its error."""
    app = AppDefinition(
        id="shop",
        functions=(
            FunctionDefinition(
                id="charge", name="Charge", retries=3, triggers=(TriggerDefinition(event="paid"),)
            ),
            FunctionDefinition(
                id="report",
                name="Report",
                retries=0,
                triggers=(TriggerDefinition(cron="0 9 * * *", timezone="Europe/Paris"),),
            ),
        ),
    )
    await register_app(connection, app, HostLease("127.0.0.1:1", timedelta(seconds=30)))
    error = orjson.dumps({"type": "ValueError", "message": "declined", "stack": "..."}).decode()
    statuses = ["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled"]
    for index, status in enumerate(statuses):
        run_id = new_id()
        await connection.execute(
            "INSERT INTO reverb.runs (id, function_id, app_id, status, event_ids, max_attempts,"
            " output, error, started_at, ended_at) VALUES ($1, 'charge', 'shop', $2, $3, 5,"
            " $4, $5, $6, $7)",
            run_id,
            status,
            [f"event-{index}"],
            '{"ok": true}' if status == "completed" else None,
            error if status == "failed" else None,
            _T0,
            _T0 + timedelta(seconds=index) if status in ("completed", "failed") else None,
        )
        await connection.execute(
            "INSERT INTO reverb.steps (run_id, id, name, kind, status, attempts, output,"
            " started_at, ended_at) VALUES ($1, 'lookup', 'lookup', 'run', 'completed', 1,"
            " '{\"amount\": 12}', $2, $2)",
            run_id,
            _T0,
        )


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[Gateway, str]]:
    """A gateway with API keys on, over a seeded database, and a valid key."""
    connection = await asyncpg.connect(database_url)
    try:
        await _seed(connection)
        key = (await create_api_key(connection, "fuzz", ("ingest", "read")))[1]
    finally:
        await connection.close()
    gateway = await start(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            log_json=False,
            log_level="warning",
        )
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        events = [{"name": "paid", "data": {"amount": index}} for index in range(3)]
        sent = await client.post("/events", json=events, headers={"authorization": f"Bearer {key}"})
        assert sent.status_code == 202, sent.text
    yield gateway, key
    await gateway.stop()


async def test_schemathesis_finds_no_server_error_and_no_schema_break(
    served: tuple[Gateway, str], tmp_path: Path
) -> None:
    gateway, key = served
    base = f"http://127.0.0.1:{gateway.http_port}"
    command = [
        str(_SCHEMATHESIS),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        ",".join(CHECKS),
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-database",
        "none",
        # One worker: hypothesis's lambda descriptions (ast.parse) are not thread-safe on
        # Python 3.11 ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--output-sanitize",
        "true",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    process = await children.spawn(
        *command,
        stdout=children.PIPE,
        stderr=children.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")
    print(report)
    assert process.returncode == 0, report[-20_000:]
    # A run that passes must have fuzzed: every operation of the document, and at least as many
    # cases as one operation's examples (1,083 in all at the default of 60).
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    generated = re.search(r"(\d+) generated", report)
    assert selected and tested and generated, report[-5_000:]
    assert selected.group(1) == selected.group(2) == tested.group(1), report[-5_000:]
    assert int(generated.group(1)) >= MAX_EXAMPLES, report[-5_000:]
