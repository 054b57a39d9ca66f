"""A small client for Reverb's HTTP API that turns every failure into a `CliError`."""

from types import TracebackType
from typing import Any

import httpx
import orjson

from reverb_cli.errors import CliError
from reverb_cli.settings import ClientSettings

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class ApiClient:
    """JSON in, JSON out; API errors become `error: <code>: <message>`."""

    def __init__(self, settings: ClientSettings) -> None:
        headers = {"accept": "application/json"}
        if settings.api_key is not None:
            headers["authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._base_url = settings.url.rstrip("/")
        self._http = httpx.Client(base_url=self._base_url, headers=headers, timeout=_TIMEOUT)

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._http.close()

    def get(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        return self._request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, content=orjson.dumps(body))

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        content: bytes | None = None,
    ) -> Any:
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            response = self._http.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.ConnectError:
            raise CliError(
                f"cannot connect to Reverb at {self._base_url}: is it running? "
                "(start it with `reverb dev APP`, or set REVERB_URL)"
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"Reverb at {self._base_url} did not answer in time") from None
        except httpx.HTTPError as error:
            raise CliError(f"request to {self._base_url} failed: {error}") from None
        return _decode(response)


def _decode(response: httpx.Response) -> Any:
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if response.is_success:
        if body is None and response.content:
            raise CliError(f"unexpected response from {response.url}: not JSON")
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code", response.status_code)
        raise CliError(f"{code}: {error.get('message', '')}")
    raise CliError(f"{response.status_code}: {response.reason_phrase or 'request failed'}")


def data_option(text: str) -> dict[str, Any]:
    """A `--data` option's value: a JSON object, or a CliError saying what is wrong."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise CliError(f"--data is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise CliError('--data must be a JSON object, e.g. \'{"email": "a@b.c"}\'')
    return data
