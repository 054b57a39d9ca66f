"""How a webhook source is configured: `REVERB_WEBHOOKS__<SOURCE>__PRESET|SECRET|EVENT|HEADER`."""

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

PresetName = Literal["github", "stripe", "slack", "standard", "hmac-sha256", "open"]

# The event name when a source names none.
DEFAULT_EVENT = "reverb-received-webhook"
# `POST /webhooks` (no source): authenticated by an API key with the ingest scope.
DEFAULT_SOURCE = "default"
# A source name, as it appears in the URL and the event (lower case).
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Path segments under /webhooks that are routes of their own, not sources.
RESERVED = frozenset({"deliveries"})


class WebhookSource(BaseModel):
    """One source: how its requests are verified, and the event they become."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # How a request proves it comes from the provider ("open": it does not, by choice).
    preset: PresetName
    # The provider's signing secret (never logged: a SecretStr).
    secret: SecretStr | None = None
    # The event name; `{type}` is replaced by the provider's event type.
    event: str = Field(default=DEFAULT_EVENT, min_length=1, max_length=256)
    # hmac-sha256 only: the header holding the hex HMAC of the raw body.
    header: str | None = None
    # hmac-sha256 and open: a header holding the sender's delivery id, if it sends one.
    delivery_header: str | None = None
    # Seconds a signed timestamp may be off (stripe, slack, standard check one).
    tolerance: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> "WebhookSource":
        if self.preset != "open" and not (self.secret and self.secret.get_secret_value()):
            raise ValueError(f"the {self.preset} preset needs a SECRET")
        if self.preset == "open" and self.secret is not None:
            # A secret given to a source that checks nothing would look like protection.
            raise ValueError("the open preset checks no signature: remove its SECRET")
        if self.header is not None and self.preset != "hmac-sha256":
            raise ValueError(f"HEADER is for the hmac-sha256 preset, not {self.preset}")
        if self.preset == "hmac-sha256" and not self.header:
            raise ValueError("the hmac-sha256 preset needs a HEADER (the signature's header)")
        for name in ("header", "delivery_header"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value.strip().lower())
        if any(ord(character) < 0x20 or ord(character) == 0x7F for character in self.event):
            raise ValueError("the EVENT name must not hold control characters")
        return self


def source_names(sources: dict[str, WebhookSource]) -> dict[str, WebhookSource]:
    """The sources by their lower-case names; ValueError for a name the URL cannot carry."""
    named: dict[str, WebhookSource] = {}
    for name, source in sources.items():
        lower = name.lower()
        if not SOURCE_NAME.fullmatch(lower) or lower in RESERVED:
            raise ValueError(
                f"webhook source {name!r}: a name is 1-64 letters, digits, '-' or '_'"
                f" (and not {', '.join(sorted(RESERVED))})"
            )
        named[lower] = source
    return named
