"""`DatabaseUrl`: a setting that must be a PostgreSQL URL, checked when settings are built.

A malformed URL then fails as a configuration error naming the setting, not as a
traceback from the driver at the first connection. The message never repeats the
URL (it may hold a password). What libpq and asyncpg accept stays accepted: several
`host:port` pairs separated by commas, `[IPv6]` hosts, and no host at all (a Unix
socket, given as `?host=/path`).
"""

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

_SCHEMES = ("postgresql", "postgres")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^\[\]:/?#@]*)(?::(?P<port>[^,]*))?")
_EXAMPLE = "postgresql://user:password@host:port/database"


def _check(value: str) -> str:
    scheme, separator, _ = value.partition("://")
    if not separator or scheme.lower() not in _SCHEMES:
        raise ValueError(f"not a PostgreSQL URL ({_EXAMPLE}): it must start with postgresql://")
    try:
        netloc = urlsplit(value).netloc
    except ValueError:
        raise ValueError(f"not a PostgreSQL URL ({_EXAMPLE}): it cannot be parsed") from None
    hosts = netloc.rpartition("@")[2]
    for host in hosts.split(",") if hosts else ():
        match = _HOST.fullmatch(host)
        if match is None:
            raise ValueError(f"not a PostgreSQL URL ({_EXAMPLE}): a host is malformed")
        port = match.group("port")
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"not a PostgreSQL URL ({_EXAMPLE}): invalid port number")
    return value


DatabaseUrl = Annotated[str, AfterValidator(_check)]
"""A `postgresql://` (or `postgres://`) URL, kept as the string given."""
