"""Verified webhooks: `POST /webhooks/{source}` (README, "Webhooks")."""

from reverb_ingress_gateway.webhooks.receiver import Received, WebhookReceiver
from reverb_ingress_gateway.webhooks.sources import DEFAULT_SOURCE, WebhookSource

__all__ = ["DEFAULT_SOURCE", "Received", "WebhookReceiver", "WebhookSource"]
