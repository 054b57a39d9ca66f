"""The `reverb` command as a user runs it (a real subprocess): migrations, API keys, and
clear errors with the right exit status for every user mistake."""

import asyncio
import hashlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.queries import Queries

from reverb_store.migrate import migrate, migration_files
from tests import children, postgres
from tests.e2e.processes import free_port


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


async def run_cli(*args: str, env: dict[str, str] | None = None, within: float = 30) -> Result:
    """Run `python -m reverb_cli ARGS` with REVERB_* cleared from the environment, then `env`."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("REVERB_")}
    process = await children.spawn(
        sys.executable,
        "-m",
        "reverb_cli",
        *args,
        env={**clean, **(env or {})},
        stdout=children.PIPE,
        stderr=children.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def assert_user_error(result: Result, message: str, code: int = 1) -> None:
    """Exit status 1 (2: a configuration error), `error: …` on stderr, and no stack trace."""
    assert result.code == code, result
    assert result.stderr.startswith("error: "), result
    assert message in result.stderr, result
    assert "Traceback" not in result.stderr + result.stdout, result


@pytest.fixture
async def empty_database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A database with nothing in it: not even Reverb's schema."""
    name = f"reverb_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield postgres.with_database(postgres_server_url, name)
    await postgres.drop_database(postgres_server_url, name)


async def test_migrate_applies_the_schema_once(empty_database_url: str) -> None:
    env = {"REVERB_DATABASE_URL": empty_database_url}
    first = await run_cli("migrate", env=env)
    assert first.code == 0, first
    assert "applied 0001_core.sql" in first.stdout

    connection = await asyncpg.connect(empty_database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM reverb.runs") == 0
    finally:
        await connection.close()

    again = await run_cli("migrate", env=env)
    assert again.code == 0, again
    assert again.stdout.strip() == "the database is up to date"


async def test_migrate_without_a_database_url() -> None:
    assert_user_error(await run_cli("migrate"), "REVERB_DATABASE_URL", code=2)


async def test_migrate_with_an_unreachable_database_hides_the_password() -> None:
    url = f"postgresql://reverb:s3cret@127.0.0.1:{free_port()}/reverb"
    result = await run_cli("migrate", env={"REVERB_DATABASE_URL": url})
    assert_user_error(result, "cannot connect to PostgreSQL at postgresql://reverb:***@127.0.0.1")
    assert "s3cret" not in result.stderr


async def test_keys_create_prints_the_key_once_and_stores_its_hash(database_url: str) -> None:
    result = await run_cli("keys", "create", "ci", env={"REVERB_DATABASE_URL": database_url})
    assert result.code == 0, result
    fields = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    assert fields["key"].startswith("rvb_")
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT name, key_hash FROM reverb.api_keys WHERE id = $1", fields["id"]
        )
    finally:
        await connection.close()
    assert row is not None
    assert row["name"] == "ci"
    assert row["key_hash"] == hashlib.sha256(fields["key"].encode()).hexdigest()

    revoked = await run_cli(
        "keys", "revoke", fields["id"], env={"REVERB_DATABASE_URL": database_url}
    )
    assert revoked.code == 0, revoked
    again = await run_cli("keys", "revoke", fields["id"], env={"REVERB_DATABASE_URL": database_url})
    assert_user_error(again, "no live API key")


async def test_client_commands_when_nothing_listens() -> None:
    env = {"REVERB_URL": f"http://127.0.0.1:{free_port()}"}
    for args in (["runs"], ["run", "some-id"], ["functions"], ["events"], ["send", "a.b"]):
        result = await run_cli(*args, env=env)
        assert_user_error(result, "cannot connect to Reverb at http://127.0.0.1:")


async def test_send_rejects_data_that_is_not_a_json_object() -> None:
    result = await run_cli("send", "user.signed_up", "--data", "{not json")
    assert_user_error(result, "--data is not valid JSON")
    result = await run_cli("send", "user.signed_up", "--data", "[1, 2]")
    assert_user_error(result, "--data must be a JSON object")


async def test_usage_mistakes_exit_with_status_2() -> None:
    unknown = await run_cli("no-such-command")
    assert unknown.code == 2
    assert "No such command" in unknown.stderr
    missing = await run_cli("send")
    assert missing.code == 2
    assert "Missing argument 'NAME'" in missing.stderr
    bad_status = await run_cli("runs", "--status", "sleepy")
    assert bad_status.code == 2


async def test_host_with_an_app_that_does_not_exist() -> None:
    result = await run_cli("host", "no/such/app.py", env={"REVERB_HOST_INSECURE": "true"})
    assert_user_error(result, "no such file: no/such/app.py")


async def test_a_host_without_a_signing_key_refuses_to_start() -> None:
    result = await run_cli("host", "no/such/app.py")
    assert result.code == 2, result
    assert result.stderr.startswith("error: REVERB_SIGNING_KEY is not set"), result
    assert result.stderr.count("\n") == 1, result  # one line, no traceback
    assert "REVERB_HOST_INSECURE=true" in result.stderr


async def test_help_lists_the_commands() -> None:
    result = await run_cli("--help")
    assert result.code == 0
    for command in ("dev", "migrate", "gateway", "worker", "host", "send", "runs", "run", "keys"):
        assert f"  {command} " in result.stdout


async def test_migrate_gives_earlier_keys_every_scope_but_host(empty_database_url: str) -> None:
    """Keys made before migration 0005 keep working: ingest, read, operate and admin."""
    connection = await asyncpg.connect(empty_database_url)
    try:
        await Queries(AsyncpgDriver(connection)).install()
        await connection.execute(
            "CREATE SCHEMA reverb; CREATE TABLE reverb.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in migration_files():
            if version < 5:
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO reverb.schema_migrations VALUES ($1, $2)", version, name
                )
        await connection.execute(
            "INSERT INTO reverb.api_keys (id, name, key_hash) VALUES ('old', 'old', 'digest')"
        )
        assert (await migrate(connection))[0] == "0005_api_key_scopes.sql"
        row = await connection.fetchrow("SELECT scopes, apps FROM reverb.api_keys")
    finally:
        await connection.close()
    assert row is not None
    assert (row["scopes"], row["apps"]) == (["ingest", "read", "operate", "admin"], [])


async def test_keys_create_with_scopes_and_apps_and_list_them(database_url: str) -> None:
    env = {"REVERB_DATABASE_URL": database_url}
    reader = await run_cli(
        "keys", "create", "dash", "--scope", "read", "--scope", "ingest", env=env
    )
    assert reader.code == 0, reader
    assert "scopes  read,ingest" in reader.stdout
    host = await run_cli("keys", "create", "shop-host", "--scope", "host", "--app", "shop", env=env)
    assert host.code == 0, host
    host_fields = dict(line.split(maxsplit=1) for line in host.stdout.splitlines())
    assert (host_fields["scopes"], host_fields["apps"]) == ("host", "shop")
    default = await run_cli("keys", "create", "app", env=env)
    assert "scopes  ingest" in default.stdout

    listed = await run_cli("keys", "list", env=env)
    assert listed.code == 0, listed
    lines = {line.split()[1]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert lines["dash"][2:4] == ["read,ingest", "-"]
    assert lines["shop-host"][2:4] == ["host", "shop"]
    assert lines["app"][2:4] == ["ingest", "-"]
    assert host_fields["key"] not in listed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "shop"], "only a host key is bound to apps"),
        (["--scope", "read", "--app", "shop"], "only a host key is bound to apps"),
        (["--scope", "host"], "at least one app"),
        (["--scope", "host", "--scope", "read", "--app", "shop"], "host scope alone"),
    ],
)
async def test_keys_create_refuses_scopes_that_do_not_fit(
    database_url: str, args: list[str], message: str
) -> None:
    result = await run_cli(
        "keys", "create", "bad", *args, env={"REVERB_DATABASE_URL": database_url}
    )
    assert_user_error(result, message)


async def test_keys_create_refuses_an_unknown_scope(database_url: str) -> None:
    env = {"REVERB_DATABASE_URL": database_url}
    result = await run_cli("keys", "create", "bad", "--scope", "root", env=env)
    assert result.code == 2, result  # click's usage error names the choices
    assert "ingest" in result.stderr


async def test_certs_makes_the_files_mutual_tls_needs(tmp_path: Path) -> None:
    result = await run_cli("certs", str(tmp_path / "certs"))
    assert result.code == 0, result
    made = sorted(path.name for path in (tmp_path / "certs").iterdir())
    assert made == [
        "ca.pem",
        "gateway-key.pem",
        "gateway.pem",
        "host-key.pem",
        "host.pem",
        "worker-key.pem",
        "worker.pem",
    ]
    assert "REVERB_TLS_CA=" in result.stdout
