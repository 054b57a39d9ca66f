"""`DatabaseUrl`: a setting that must be a PostgreSQL URL, checked when settings are built.

A malformed URL then fails as a configuration error naming the setting, not as a
traceback from the driver at the first connection. The message never repeats the
URL (it may hold a password).
"""

from typing import Annotated

from pydantic import AfterValidator, TypeAdapter, UrlConstraints, ValidationError
from pydantic_core import MultiHostUrl

_SCHEMES = ["postgresql", "postgres"]
_URL: TypeAdapter[MultiHostUrl] = TypeAdapter(
    Annotated[MultiHostUrl, UrlConstraints(allowed_schemes=_SCHEMES)]
)


def _check(value: str) -> str:
    try:
        _URL.validate_python(value)
    except ValidationError as error:
        (problem, *_) = error.errors(include_url=False, include_input=False)
        raise ValueError(
            f"not a PostgreSQL URL (postgresql://user:password@host:port/database):"
            f" {problem['msg']}"
        ) from None
    return value


DatabaseUrl = Annotated[str, AfterValidator(_check)]
"""A `postgresql://` (or `postgres://`) URL, kept as the string given."""
