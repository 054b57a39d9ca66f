"""A gRPC reverb.v1.FunctionHost server for an app written with the reverb SDK.

from reverb_function_host import HostSettings, serve
asyncio.run(serve(app, HostSettings()))
"""

from reverb_function_host.host import Host, InsecureHostError, serve, signing_keyring, start
from reverb_function_host.settings import HostSettings

__all__ = ["Host", "HostSettings", "InsecureHostError", "serve", "signing_keyring", "start"]
