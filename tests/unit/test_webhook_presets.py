"""The presets' verification against a clock the test drives, and how sources are
configured from REVERB_WEBHOOKS__<SOURCE>__… variables."""

import hashlib
import hmac

import pytest
from pydantic import SecretStr, ValidationError

from reverb_ingress_gateway import GatewaySettings
from reverb_ingress_gateway.errors import Unauthenticated
from reverb_ingress_gateway.webhooks import WebhookSource
from reverb_ingress_gateway.webhooks.events import event_name
from reverb_ingress_gateway.webhooks.presets import preset

SIGNED_AT = 1_800_000_000
BODY = b'{"id": "evt_1", "type": "charge.succeeded"}'


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _stripe_headers() -> dict[str, str]:
    signature = _hex("whsec_s", f"{SIGNED_AT}.".encode() + BODY)
    return {"stripe-signature": f"t={SIGNED_AT},v1=00ff,v1={signature}"}


def _slack_headers() -> dict[str, str]:
    signature = "v0=" + _hex("s", f"v0:{SIGNED_AT}:".encode() + BODY)
    return {"x-slack-request-timestamp": str(SIGNED_AT), "x-slack-signature": signature}


@pytest.mark.parametrize(
    ("name", "secret", "headers"),
    [("stripe", "whsec_s", _stripe_headers()), ("slack", "s", _slack_headers())],
)
def test_a_signed_time_is_accepted_within_the_tolerance_only(
    name: str, secret: str, headers: dict[str, str]
) -> None:
    verifier = preset(WebhookSource(preset=name, secret=SecretStr(secret)))  # type: ignore[arg-type]
    for now in (SIGNED_AT - 300, SIGNED_AT, SIGNED_AT + 300):
        verifier.verify(headers, BODY, now)
    for now in (SIGNED_AT - 301, SIGNED_AT + 301):
        with pytest.raises(Unauthenticated, match="stale"):
            verifier.verify(headers, BODY, now)


def test_a_tolerance_is_configurable() -> None:
    source = WebhookSource(preset="stripe", secret=SecretStr("whsec_s"), tolerance=10)
    with pytest.raises(Unauthenticated):
        preset(source).verify(_stripe_headers(), BODY, SIGNED_AT + 11)


def test_sources_come_from_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVERB_DATABASE_URL", "postgresql://localhost/reverb")
    monkeypatch.setenv("REVERB_WEBHOOKS__GH__PRESET", "github")
    monkeypatch.setenv("REVERB_WEBHOOKS__GH__SECRET", "s3cret")
    monkeypatch.setenv("REVERB_WEBHOOKS__GH__EVENT", "github/{type}")
    monkeypatch.setenv("REVERB_WEBHOOKS__PARTNER__PRESET", "hmac-sha256")
    monkeypatch.setenv("REVERB_WEBHOOKS__PARTNER__SECRET", "p")
    monkeypatch.setenv("REVERB_WEBHOOKS__PARTNER__HEADER", "X-Partner-Signature")
    settings = GatewaySettings()  # type: ignore[call-arg]
    assert sorted(settings.webhooks) == ["gh", "partner"]
    github = settings.webhooks["gh"]
    assert (github.preset, github.event) == ("github", "github/{type}")
    assert "s3cret" not in repr(settings)
    assert settings.webhooks["partner"].header == "x-partner-signature"
    assert settings.webhook_max_body_bytes == 25 * 1024 * 1024


@pytest.mark.parametrize(
    "values",
    [
        {"preset": "github"},  # no secret
        {"preset": "hmac-sha256", "secret": "s"},  # no header
        {"preset": "magic", "secret": "s"},
        {"preset": "open", "event": "bad\nname"},
        {"preset": "open", "secret": "s"},  # a secret that would check nothing
        {"preset": "github", "secret": "s", "header": "x-sig"},  # a header it never reads
    ],
)
def test_an_incomplete_source_is_refused(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        WebhookSource(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["deliveries", "has space", "a/b", ""])
def test_a_source_name_the_url_cannot_carry_is_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(
            database_url="postgresql://localhost/reverb",
            webhooks={name: WebhookSource(preset="open")},
        )


def test_the_event_type_fills_the_event_name() -> None:
    assert event_name("github.{type}", "pull_request") == "github.pull_request"
    assert event_name("github.{type}", None) == "github.unknown"
    assert event_name("github.{type}", "a\x00b\n") == "github.ab"
    assert event_name("fixed", "push") == "fixed"
