"""Reverb's ingress gateway: the reverb.v1.Ingress gRPC service and the HTTP API over it."""

from reverb_ingress_gateway.gateway import Gateway, UnsafeDevMode, serve, start
from reverb_ingress_gateway.settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "UnsafeDevMode", "serve", "start"]
