"""The `time_out_run` payload: the encoding migration 0016's triggers write decodes, and a
malformed one is refused (the job is dropped, not run)."""

import pytest

from reverb_store import jobs


def test_the_triggers_encoding_decodes() -> None:
    # What `json_build_object('run_id', …, 'limit', …)::text` writes.
    written = b'{"run_id" : "r-1", "limit" : "finish"}'
    assert jobs.TimeOutRun.decode(written) == jobs.TimeOutRun("r-1", "finish")
    payload = jobs.TimeOutRun("r-2", "start")
    assert jobs.TimeOutRun.decode(payload.encode()) == payload
    assert jobs.kind_of(payload, delayed=True) is jobs.TIME_OUT_RUN
    assert jobs.TIME_OUT_RUN.priority == jobs.WAKE_RUN.priority


@pytest.mark.parametrize(
    "payload", [b'{"run_id": "r", "limit": "later"}', b'{"run_id": "r"}', b"[]"]
)
def test_a_malformed_payload_is_refused(payload: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        jobs.TimeOutRun.decode(payload)
