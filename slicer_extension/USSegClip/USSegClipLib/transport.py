"""HTTP plumbing of the MONAI Label client: one server's ``requests`` session with timeouts, retries and a token.

Every request has a timeout; only idempotent requests (GET, HEAD) are retried, on connection failures and on
502/503/504 answers, with exponential back-off. POST/PUT/DELETE are sent once (connection attempts that never
reached the server are retried, because nothing was sent). Failures to reach the server and error answers become
:mod:`USSegClipLib.errors` exceptions (see :mod:`USSegClipLib.answers`); with a login (:mod:`USSegClipLib.auth`)
a refused token is fetched anew and the request sent once more.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .answers import json_body, raise_for_error_status
from .auth import TokenProvider
from .errors import ServerError, ServerResponseError, ServerTimeoutError, ServerUnavailableError

__all__ = ["ServerTransport"]

logger = logging.getLogger(__name__)

_Transport = TypeVar("_Transport", bound="ServerTransport")


class ServerTransport:
    """Sends requests to one server; :class:`USSegClipLib.client.MonaiLabelClient` adds the API on top.

    The arguments are :class:`~USSegClipLib.client.MonaiLabelClient`'s (documented there).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL, or a numeric setting is out of range.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        infer_timeout: float = 600.0,
        retries: int = 2,
        backoff: float = 0.3,
        username: str | None = None,
        password: str | None = None,
        token_url: str | None = None,
    ):
        base_url = (base_url or "").strip()
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"server URL must start with http:// or https://, got {base_url!r}")
        if timeout <= 0 or infer_timeout <= 0:
            raise ValueError(f"timeouts must be positive, got timeout={timeout}, infer_timeout={infer_timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.infer_timeout = float(infer_timeout)
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        if token and username:
            raise ValueError("give either a token or a username and password, not both")
        self.auth = (TokenProvider(self.base_url, username, password or "", self.timeout, token_url)
                     if username else None)
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def clone(self: _Transport) -> _Transport:
        """A client for the same server with its own HTTP session (for a request made in another thread)."""
        twin = type(self).__new__(type(self))
        twin.base_url, twin.timeout, twin.infer_timeout = self.base_url, self.timeout, self.infer_timeout
        twin.auth = getattr(self, "auth", None)  # a shared token provider (logins are serialised there)
        twin.session = requests.Session()
        twin.session.headers.update(self.session.headers)
        for prefix, adapter in self.session.adapters.items():
            twin.session.mount(prefix, HTTPAdapter(max_retries=adapter.max_retries))
        return twin

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _request(self, method: str, path: str, timeout: float | None = None, **kwargs) -> requests.Response:
        auth = getattr(self, "auth", None)
        if auth is None:
            return self._request_once(method, path, timeout, **kwargs)
        try:
            return self._request_once(method, path, timeout, headers=auth.header(), **kwargs)
        except ServerResponseError as e:
            if e.status != 401 or not auth.invalidate():
                raise
        logger.info("%s %s: token refused (401); logging in again", method, path)
        for item in (kwargs.get("files") or {}).values():  # uploads are sent again from their start
            stream = item[1] if isinstance(item, tuple) else item
            if hasattr(stream, "seek"):
                stream.seek(0)
        return self._request_once(method, path, timeout, headers=auth.header(), **kwargs)

    def _request_once(self, method: str, path: str, timeout: float | None = None, **kwargs) -> requests.Response:
        url = self._url(path)
        logger.debug("%s %s", method, url)
        try:
            response = self.session.request(method, url, timeout=(self.timeout, timeout or self.timeout), **kwargs)
        except requests.exceptions.Timeout as e:
            raise ServerTimeoutError(f"MONAI Label server at {self.base_url} did not answer {method} {path} "
                                     f"within {timeout or self.timeout:g} s") from e
        except requests.exceptions.ConnectionError as e:
            # after urllib3 retries a read timeout arrives as ConnectionError(MaxRetryError(reason=ReadTimeoutError))
            reason = getattr(e.args[0], "reason", None) if e.args else None
            timed_out = isinstance(reason, urllib3.exceptions.TimeoutError)
            if timed_out and not isinstance(reason, urllib3.exceptions.NewConnectionError):  # the latter: refused
                raise ServerTimeoutError(f"MONAI Label server at {self.base_url} did not answer {method} {path} "
                                         f"within {timeout or self.timeout:g} s") from e
            raise ServerUnavailableError(
                f"cannot reach the MONAI Label server at {self.base_url} ({type(e).__name__}); "
                "is it running and is the address right?"
            ) from e
        except requests.exceptions.RequestException as e:
            raise ServerError(f"request {method} {url} failed: {e}") from e
        raise_for_error_status(response, method, path)
        return response

    @staticmethod
    def _json(response: requests.Response) -> Any:
        return json_body(response)

    def close(self) -> None:
        """Close the underlying HTTP session."""
        self.session.close()

    def __enter__(self: _Transport) -> _Transport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
