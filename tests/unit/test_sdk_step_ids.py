"""Step ids are the user's strings; repeats within a run get ":n" suffixes."""

from reverb._step_ids import StepIds


def test_repeats_are_suffixed_in_call_order() -> None:
    ids = StepIds()
    assert [ids.claim(name) for name in ["send", "fetch", "send", "send", "fetch"]] == [
        "send",
        "fetch",
        "send:1",
        "send:2",
        "fetch:1",
    ]


def test_an_id_written_like_a_suffix_never_collides() -> None:
    ids = StepIds()
    assert [ids.claim(name) for name in ["send:1", "send", "send"]] == ["send:1", "send", "send:2"]
