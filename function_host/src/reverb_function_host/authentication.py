"""Checking the worker's Starts: their MAC, their age, their nonce (once only), their app
and host.

One `StartCheck` per Session stream (it knows the stream's peer, for the audit log); the
replay guard is the host's, shared by all of its streams. Every refusal is logged with
its reason, the peer and the run, never with a key or a MAC.
"""

import hmac
import time
from typing import NamedTuple

import structlog

from reverb.signing import Keyring, ReplayGuard, SigningKey
from reverb_function_host.frames import Refused, Seal

log = structlog.get_logger("reverb.function_host")


class StartAuth(NamedTuple):
    """What a signed Start's `auth` says (the wire decodes it once its MAC held). A
    NamedTuple: made for every Start, at a third of a frozen dataclass's cost."""

    signed_at_ms: int
    nonce: bytes
    app_id: str
    host_address: str


class StartCheck:
    """Verifies the Starts of one stream for the host of `app_id`: first the MAC over the
    Start's bytes (`verify`, before they are parsed), then what the parsed Start says
    (`admit`)."""

    def __init__(
        self,
        app_id: str,
        host_address: str,
        keyring: Keyring | None,
        guard: ReplayGuard,
        peer: str,
    ) -> None:
        self._app_id = app_id
        self._host_address = host_address
        self._keyring = keyring
        self._guard = guard
        self._peer = peer

    @property
    def required(self) -> bool:
        """Whether Starts must be signed (False only on an insecure host)."""
        return self._keyring is not None

    def verify(self, key_id: str, start: bytes, mac: bytes) -> SigningKey | str | None:
        """The key whose MAC over `start` (a serialized Start) is `mac`, or why there is
        none; None on an insecure host (nothing is checked)."""
        keyring = self._keyring
        if keyring is None:
            return None
        key = keyring.get(key_id)
        if key is None:
            return f"unknown signing key id {key_id!r}"
        if not hmac.compare_digest(key.start_mac(start), mac):
            return "invalid MAC"
        return key

    def admit(self, run_id: str, auth: StartAuth, key: SigningKey) -> Seal | Refused:
        """The seal for the invocation's answers if the Start, whose MAC `key` verified, is
        for this host and new, else why not."""
        seal = Seal(key, auth.nonce)
        if auth.app_id != self._app_id:
            problem = f"the Start is for app {auth.app_id!r}, this host serves {self._app_id!r}"
            return self.refuse(run_id, problem, seal)
        if auth.host_address != self._host_address:
            problem = (
                f"the Start is for the host at {auth.host_address!r},"
                f" this host is {self._host_address!r}"
            )
            return self.refuse(run_id, problem, seal)
        replay = self._guard.problem(auth.nonce, auth.signed_at_ms, time.time_ns() // 1_000_000)
        if replay is not None:
            return self.refuse(run_id, replay, seal)
        return seal

    def unsigned(self, run_id: str) -> Refused | None:
        """A plain (unsigned) Start: refused unless the host is insecure."""
        if self._keyring is None:
            return None
        return self.refuse(run_id, "the Start is not signed", None)

    def refusal_seal(self, key_id: str, nonce: bytes) -> Seal | None:
        """How to sign the failure that answers a refused Start: with the key it names (the
        current one if unknown) and the nonce it carries, so a worker that holds the key
        reads why; None on an insecure host."""
        keyring = self._keyring
        if keyring is None:
            return None
        key = keyring.get(key_id)
        return Seal(key if key is not None else keyring.current, nonce)

    def refuse(self, run_id: str, problem: str, seal: Seal | None) -> Refused:
        log.warning(
            "refused a Start",
            reason=problem,
            peer=self._peer,
            method="/reverb.v1.FunctionHost/Invoke",
            run_id=run_id,
            app_id=self._app_id,
        )
        return Refused(f"the Start is not authenticated: {problem}", seal)
