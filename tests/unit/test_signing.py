"""The pieces of signed invocations (`reverb.signing`): key ids, MACs, the answer prefix, the
replay guard's window and bounded memory."""

import hashlib
import hmac

import pytest

from reverb.signing import Keyring, ReplayGuard, answer_prefix, key_id

NOW = 1_800_000_000_000
NONCES = [bytes([n]) * 16 for n in range(10)]


def test_a_key_id_names_a_key_without_revealing_it() -> None:
    assert key_id(b"secret") == hashlib.sha256(b"reverb-key-id\x00secret").hexdigest()[:16]
    ring = Keyring("new", ["old"])
    assert ring.current.id == key_id(b"new")
    assert [key.id for key in ring.keys] == [key_id(b"new"), key_id(b"old")]
    assert ring.get(key_id(b"old")) is not None and ring.get("unknown") is None
    assert "new" not in repr(ring.current)
    with pytest.raises(ValueError, match="empty"):
        Keyring("")


@pytest.mark.parametrize("secret", [b"k", b"k" * 64, b"k" * 65, bytes(range(256))])
def test_a_mac_is_hmac_sha256(secret: bytes) -> None:
    key = Keyring(secret).current
    for message in (b"", b"m", b"m" * 1000):
        assert key.mac(message) == hmac.digest(secret, message, "sha256")
        assert key.verifies(message, hmac.digest(secret, message, "sha256"))
    assert not key.verifies(b"m", b"\0" * 32)


def test_the_answer_prefix_is_the_domain_the_nonce_and_the_place() -> None:
    assert (
        answer_prefix(b"n" * 16, 3)
        == b"reverb-answer-v2\x00\x00\x00\x10" + b"n" * 16 + b"\x00" * 7 + b"\x03"
    )
    # The nonce's length keeps (nonce, place) unambiguous.
    assert answer_prefix(b"n" * 15, 3) != answer_prefix(b"n" * 16, 3)[:-1]


def test_each_nonce_is_accepted_once_within_the_window() -> None:
    guard = ReplayGuard(window_ms=1000)
    assert guard.problem(NONCES[0], NOW, NOW) is None
    assert (
        guard.problem(NONCES[0], NOW, NOW + 10) == "replayed Start (its nonce was accepted before)"
    )
    assert "stale" in (guard.problem(NONCES[1], NOW - 1001, NOW) or "")
    assert "stale" in (guard.problem(NONCES[1], NOW + 1001, NOW) or "")
    assert "16 bytes" in (guard.problem(b"short", NOW, NOW) or "")


def test_expired_nonces_are_forgotten_and_stay_refused_as_stale() -> None:
    guard = ReplayGuard(window_ms=1000)
    guard.problem(NONCES[0], NOW, NOW)
    assert guard.problem(NONCES[1], NOW + 2000, NOW + 2000) is None
    assert len(guard) == 1  # the first one expired
    assert "stale" in (guard.problem(NONCES[0], NOW, NOW + 2000) or "")


def test_memory_is_bounded_without_letting_a_forgotten_nonce_back_in() -> None:
    guard = ReplayGuard(window_ms=60_000, capacity=3)
    for n in range(5):
        assert guard.problem(NONCES[n], NOW + n, NOW + n) is None
    assert len(guard) == 3
    # NONCES[0] and [1] were forgotten early: signed at or before the floor, refused.
    assert "older than the replay guard remembers" in (
        guard.problem(NONCES[1], NOW + 1, NOW + 5) or ""
    )
    assert guard.problem(NONCES[4], NOW + 4, NOW + 5) is not None
    assert guard.problem(NONCES[5], NOW + 5, NOW + 5) is None
