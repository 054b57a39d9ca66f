"""The HTTP API: JSON routes translated onto the Ingress servicer."""
