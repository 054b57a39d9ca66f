"""Configuration errors of the services' commands: one clear line, exit status 2, no
traceback, and no secret repeated."""

from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.integration.test_cli import assert_user_error, run_cli

BAD_URLS = [
    ("localhost/reverb", "it must start with postgresql://"),
    ("http://reverb:s3cret@127.0.0.1/reverb", "it must start with postgresql://"),
    ("postgresql://reverb:s3cret@127.0.0.1:port/reverb", "invalid port number"),
]


def one_line(stderr: str) -> None:
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.parametrize("command", [["worker"], ["gateway"], ["migrate"]])
@pytest.mark.parametrize(("url", "problem"), BAD_URLS)
async def test_a_malformed_database_url_is_a_configuration_error(
    command: list[str], url: str, problem: str
) -> None:
    result = await run_cli(*command, env={"REVERB_DATABASE_URL": url})
    assert_user_error(result, "invalid configuration: REVERB_DATABASE_URL: not a PostgreSQL", 2)
    assert problem in result.stderr
    assert "s3cret" not in result.stderr
    one_line(result.stderr)


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (["worker"], {}, "REVERB_DATABASE_URL: Field required"),
        (
            ["host", "examples/shop.py"],
            {"REVERB_MAX_MESSAGE_BYTES": "lots"},
            "REVERB_MAX_MESSAGE_BYTES: Input should be a valid integer",
        ),
        (
            ["worker"],
            {"REVERB_DATABASE_URL": "postgresql://127.0.0.1/x", "REVERB_WORKER_CONCURRENCY": "1"},
            "REVERB_WORKER_CONCURRENCY: Input should be greater than or equal to 2",
        ),
    ],
)
async def test_other_configuration_errors_exit_with_status_2(
    command: list[str], env: dict[str, str], message: str
) -> None:
    result = await run_cli(*command, env=env)
    assert_user_error(result, f"invalid configuration: {message}", 2)
    one_line(result.stderr)


async def test_a_nested_setting_is_named_by_the_variable_the_user_wrote() -> None:
    """A webhook source's setting is `REVERB_WEBHOOKS__<SOURCE>__<NAME>`: the error names
    that variable (double underscores), not one with single underscores that means nothing."""
    env = {
        "REVERB_DATABASE_URL": "postgresql://127.0.0.1/x",
        "REVERB_WEBHOOKS__GH__PRESET": "github",
        "REVERB_WEBHOOKS__GH__SECRET": "s3cret",
        "REVERB_WEBHOOKS__GH__COLOUR": "blue",
    }
    result = await run_cli("gateway", env=env)
    assert_user_error(result, "invalid configuration: REVERB_WEBHOOKS__GH__COLOUR: Extra inputs", 2)
    assert "s3cret" not in result.stderr
    one_line(result.stderr)


async def test_a_worker_for_an_unknown_database_stops_at_once(database_url: str) -> None:
    unknown = urlunsplit(urlsplit(database_url)._replace(path="/reverb_no_such_database"))
    result = await run_cli("worker", env={"REVERB_DATABASE_URL": unknown})
    assert_user_error(result, "worker cannot connect to PostgreSQL: database", 2)
    assert "does not exist" in result.stderr
