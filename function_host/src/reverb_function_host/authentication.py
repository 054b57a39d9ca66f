"""Checking the worker's Starts: their MAC, their age, their nonce (once only), their app.

One `StartCheck` per Session stream (it knows the stream's peer, for the audit log); the
replay guard is the host's, shared by all of its streams. Every refusal is logged with
its reason, the peer and the run, never with a key or a MAC.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from reverb.signing import Keyring, ReplayGuard
from reverb_function_host.frames import Refused, Seal

log = structlog.get_logger("reverb.function_host")


@dataclass(frozen=True, slots=True)
class StartAuth:
    """What a Start's `auth` says (the wire decodes it)."""

    key_id: str
    signed_at_ms: int
    nonce: bytes
    app_id: str
    host_address: str
    mac: bytes


class StartCheck:
    """Verifies the Starts of one stream for the host of `app_id`."""

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

    def verify(
        self, run_id: str, auth: StartAuth | None, signed: Callable[[], bytes]
    ) -> Seal | Refused | None:
        """The seal for the invocation's answers if the Start is authentic, else why not.
        None on an insecure host (nothing is checked). `signed()` gives what the MAC covers."""
        keyring = self._keyring
        if keyring is None:
            return None
        if auth is None:
            return self._refuse(run_id, "the Start is not signed", None)
        key = keyring.get(auth.key_id)
        seal = Seal(key if key is not None else keyring.current, auth.nonce)
        if key is None:
            return self._refuse(run_id, f"unknown signing key id {auth.key_id!r}", seal)
        if not key.verifies(signed(), auth.mac):
            return self._refuse(run_id, "invalid MAC", seal)
        if auth.app_id != self._app_id:
            problem = f"the Start is for app {auth.app_id!r}, this host serves {self._app_id!r}"
            return self._refuse(run_id, problem, seal)
        if auth.host_address != self._host_address:
            problem = (
                f"the Start is for the host at {auth.host_address!r},"
                f" this host is {self._host_address!r}"
            )
            return self._refuse(run_id, problem, seal)
        replay = self._guard.problem(auth.nonce, auth.signed_at_ms, time.time_ns() // 1_000_000)
        if replay is not None:
            return self._refuse(run_id, replay, seal)
        return seal

    def _refuse(self, run_id: str, problem: str, seal: Seal | None) -> Refused:
        log.warning(
            "refused a Start",
            reason=problem,
            peer=self._peer,
            method="/reverb.v1.FunctionHost/Invoke",
            run_id=run_id,
            app_id=self._app_id,
        )
        return Refused(f"the Start is not authenticated: {problem}", seal)
