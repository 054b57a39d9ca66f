"""The gateway's public API, as other packages (the CLI) import it."""

import pytest

import reverb_ingress_gateway
import reverb_store.control


def test_the_gateway_exports() -> None:
    assert reverb_ingress_gateway.__all__ == [
        "Gateway",
        "GatewaySettings",
        "UnsafeDevMode",
        "serve",
        "start",
    ]


def test_settings_come_from_reverb_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVERB_DATABASE_URL", "postgresql://db/reverb")
    monkeypatch.setenv("REVERB_HTTP_ADDRESS", "127.0.0.1:9000")
    monkeypatch.setenv("REVERB_DEV", "true")
    monkeypatch.setenv("REVERB_MAX_EVENT_BYTES", "1024")
    settings = reverb_ingress_gateway.GatewaySettings()  # type: ignore[call-arg]
    assert settings.database_url == "postgresql://db/reverb"
    assert settings.http_address == "127.0.0.1:9000"
    assert settings.ingress_address == "127.0.0.1:8289"
    assert settings.dev is True
    assert settings.max_event_bytes == 1024
    assert settings.max_body_bytes == 10 * 1024 * 1024


def test_the_control_queries_are_exported_sorted() -> None:
    names = reverb_store.control.__all__
    assert names == sorted(names)
    for name in ("create_api_key", "revoke_api_key", "verify", "register_app", "list_runs"):
        assert name in names
