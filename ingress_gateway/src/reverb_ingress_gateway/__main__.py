"""`python -m reverb_ingress_gateway`: serve with settings from REVERB_* variables."""

import asyncio

from reverb_ingress_gateway import GatewaySettings, serve


def main() -> None:
    settings = GatewaySettings()  # type: ignore[call-arg]  # database_url comes from the env
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
