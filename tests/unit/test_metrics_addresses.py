"""REVERB_METRICS_ADDRESS: checked when the settings are read (a clear error, not a crash at
start), and spread over the three services by `reverb dev`."""

import pydantic
import pytest

from reverb_cli.dev import metrics_addresses
from reverb_cli.errors import CliError
from reverb_function_host import HostSettings
from reverb_queue_worker import WorkerSettings


@pytest.mark.parametrize("address", ["9464", "localhost", "127.0.0.1:port", "127.0.0.1:70000"])
def test_a_metrics_address_that_is_not_host_port_is_refused(address: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="is not host:port"):
        WorkerSettings(database_url="postgresql://localhost/x", metrics_address=address)
    with pytest.raises(pydantic.ValidationError, match="is not host:port"):
        HostSettings(host_insecure=True, metrics_address=address)


def test_metrics_addresses_are_off_unless_set() -> None:
    assert WorkerSettings(database_url="postgresql://localhost/x").metrics_address is None
    settings = HostSettings(host_insecure=True, metrics_address="[::1]:9466")
    assert settings.metrics_address == "[::1]:9466"


def test_reverb_dev_puts_the_worker_and_the_host_on_the_next_ports() -> None:
    assert metrics_addresses("127.0.0.1:9464") == {
        "gateway": "127.0.0.1:9464",
        "worker": "127.0.0.1:9465",
        "host": "127.0.0.1:9466",
    }
    assert set(metrics_addresses("127.0.0.1:0").values()) == {"127.0.0.1:0"}
    with pytest.raises(CliError):
        metrics_addresses("nowhere")
