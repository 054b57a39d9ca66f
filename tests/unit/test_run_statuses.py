"""A run's statuses have the same names in the store, the API (the protos) and the CLI."""

from typing import get_args

from reverb_cli.api_commands import RUN_STATUSES
from reverb_cli.control_commands import CANCELLABLE as CLI_CANCELLABLE
from reverb_contracts.v1 import ingress_pb2
from reverb_ingress_gateway.wire.messages import RUN_STATUSES as API_STATUSES
from reverb_store.execution import CANCELLABLE, RunStatus

ISSUED = ["queued", "running", "sleeping", "waiting", "paused", "completed", "failed", "cancelled"]


def test_the_statuses_are_named_alike_everywhere() -> None:
    proto = [
        value.name.removeprefix("RUN_STATUS_").lower()
        for value in ingress_pb2.RunStatus.DESCRIPTOR.values
        if value.number != 0
    ]
    assert sorted(get_args(RunStatus)) == sorted(ISSUED)
    assert sorted(proto) == sorted(ISSUED)
    assert list(RUN_STATUSES) == ISSUED
    assert ingress_pb2.RUN_STATUS_PAUSED == 8
    # The API's names (JSON and `?status=`) map each status to its own proto value.
    assert sorted(API_STATUSES) == sorted(ISSUED)
    for name, value in API_STATUSES.items():
        assert ingress_pb2.RunStatus.Name(value) == f"RUN_STATUS_{name.upper()}"


def test_the_cli_offers_to_cancel_what_the_store_can() -> None:
    assert sorted(CLI_CANCELLABLE) == sorted(CANCELLABLE)
