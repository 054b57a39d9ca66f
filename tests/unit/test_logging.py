"""Logs never carry the local variables of a failing frame (they can hold secrets)."""

import pytest
import structlog

from reverb_telemetry import configure_logging


@pytest.mark.parametrize("json", [True, False])
def test_a_logged_exception_shows_no_local_variables(
    json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json=json)
    try:
        database_url = "postgresql://reverb:hunter2@db/reverb"
        raise ConnectionError(f"cannot reach the database ({len(database_url)} chars)")
    except ConnectionError:
        structlog.get_logger("test").exception("database down")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "cannot reach the database" in err
    assert "hunter2" not in err
