"""Log in to a MONAI Label server that has authentication on, and keep a valid bearer token.

MONAI Label (``MONAI_LABEL_AUTH_ENABLE=true``) checks JWTs issued by an OpenID Connect realm (Keycloak). The server
tells where that realm is: ``GET /auth/`` answers ``{"enabled": true, "realm": URI, "client_id": ID}`` (404 when
authentication is off). :class:`TokenProvider` reads it once, finds the realm's token endpoint in
``<realm>/.well-known/openid-configuration`` and logs in with the OAuth2 password grant (``client_id``, username,
password), as Keycloak's direct-access grant expects. The access token is renewed shortly before it expires
(refresh-token grant, or a new login when that fails); the client also logs in again once when the server answers
401 (a revoked token, a restarted realm).

The password stays in memory only; nothing is written to disk.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests

from .errors import ServerError, ServerResponseError, ServerTimeoutError, ServerUnavailableError

__all__ = ["TokenProvider"]

logger = logging.getLogger(__name__)


class TokenProvider:
    """Bearer tokens for one user of one MONAI Label server.

    Args:
        base_url: the MONAI Label server, e.g. ``https://monailabel.example.org``.
        username, password: the user's credentials in the server's realm.
        timeout: seconds for each request to the server's ``/auth/`` and to the realm.
        token_url: the realm's token endpoint, when clients reach the realm at another address than the server
            does (default: the ``token_endpoint`` of the realm the server names).
        client_id: OAuth2 client id (default: the one the server names, ``monailabel-app`` in MONAI Label).
        margin_s: renew a token this many seconds before it expires (at most a quarter of its lifetime).

    Attributes:
        logins, refreshes: how many password and refresh grants were made (for diagnostics and tests).

    Examples::

        provider = TokenProvider("http://127.0.0.1:8000", "annotator", "secret")
        requests.get("http://127.0.0.1:8000/datastore/", headers=provider.header())
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        token_url: str | None = None,
        client_id: str | None = None,
        margin_s: float = 30.0,
    ) -> None:
        if not username:
            raise ValueError("a username is needed to log in")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password or ""
        self.timeout = float(timeout)
        self.token_url = token_url
        self.client_id = client_id
        self.margin_s = float(margin_s)
        self.logins = 0
        self.refreshes = 0
        self._enabled: bool | None = None  # None: not asked yet
        self._access: str | None = None
        self._access_until = 0.0
        self._refresh: str | None = None
        self._refresh_until = 0.0
        self._lock = threading.Lock()
        self._http = requests.Session()

    def __repr__(self) -> str:  # never shows the password or tokens
        return f"TokenProvider({self.base_url!r}, user={self.username!r})"

    # ------------------------------------------------------------------ public
    def header(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` with a token valid for a while; ``{}`` when auth is off.

        Raises:
            ServerResponseError: 401 when the realm refuses the credentials (the message says why).
            ServerUnavailableError, ServerTimeoutError: the server or the realm cannot be reached.
        """
        with self._lock:
            if self._enabled is None:
                self._discover()
            if not self._enabled:
                return {}
            now = time.monotonic()
            if self._access is None or now >= self._access_until:
                if not (self._refresh and now < self._refresh_until and self._grant_refresh()):
                    self._grant_password()
            return {"Authorization": f"Bearer {self._access}"}

    def invalidate(self) -> bool:
        """Forget the tokens after the server refused one (401); True when a new login can be tried."""
        with self._lock:
            self._access = self._refresh = None
            return bool(self._enabled)

    # ------------------------------------------------------------------ steps
    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self._http.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.Timeout as e:
            raise ServerTimeoutError(f"no answer from {url} within {self.timeout:g} s while logging in") from e
        except requests.exceptions.ConnectionError as e:
            raise ServerUnavailableError(f"cannot reach {url} to log in ({type(e).__name__}); is the address "
                                         "of the server and of its login realm right?") from e
        except requests.exceptions.RequestException as e:
            raise ServerError(f"login request {method} {url} failed: {e}") from e

    @staticmethod
    def _json(response: requests.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ServerError(f"{what} at {response.url} answered HTTP {response.status_code} without a JSON object")
        return body

    def _discover(self) -> None:
        """Ask the server whether auth is on, for which realm and client; find the realm's token endpoint."""
        response = self._call("GET", f"{self.base_url}/auth/")
        if response.status_code == 404:  # MONAI Label adds /auth/ only when authentication is on
            logger.info("%s has authentication off; requests are sent without a token", self.base_url)
            self._enabled = False
            return
        if response.status_code != 200:
            raise ServerResponseError(response.status_code, response.text[:300], "GET", "/auth/")
        settings = self._json(response, "the server's auth settings")
        self._enabled = bool(settings.get("enabled"))
        if not self._enabled:
            return
        self.client_id = self.client_id or settings.get("client_id") or "monailabel-app"
        if not self.token_url:
            realm = str(settings.get("realm") or "").rstrip("/")
            if not realm:
                raise ServerError(f"{self.base_url}/auth/ names no realm to log in to")
            config_url = f"{realm}/.well-known/openid-configuration"
            answer = self._call("GET", config_url)
            if answer.status_code != 200:
                raise ServerError(f"the login realm's OpenID configuration {config_url} answered "
                                  f"HTTP {answer.status_code}")
            self.token_url = self._json(answer, "the realm's OpenID configuration").get("token_endpoint")
            if not self.token_url:
                raise ServerError(f"{config_url} names no token_endpoint")

    def _token_request(self, form: dict[str, str]) -> requests.Response:
        return self._call("POST", self.token_url, data={"client_id": self.client_id, **form})

    def _store(self, body: dict[str, Any]) -> None:
        now = time.monotonic()
        token = body.get("access_token")
        if not token:
            raise ServerError(f"the token endpoint {self.token_url} answered without an access_token")
        lifetime = float(body.get("expires_in") or 60)
        self._access = str(token)
        self._access_until = now + lifetime - min(self.margin_s, lifetime / 4)
        self._refresh = body.get("refresh_token")
        refresh_lifetime = float(body.get("refresh_expires_in") or 0)
        self._refresh_until = now + refresh_lifetime - min(self.margin_s, refresh_lifetime / 4)

    def _grant_password(self) -> None:
        response = self._token_request({"grant_type": "password", "username": self.username,
                                        "password": self._password})
        if response.status_code != 200:
            try:
                body = response.json()
                reason = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            except ValueError:
                reason = None
            status = 401 if response.status_code in (400, 401, 403) else response.status_code
            raise ServerResponseError(
                status, f"login as {self.username!r} refused: {reason or response.reason or 'no reason given'}",
                "POST", self.token_url,
            )
        self._store(self._json(response, "the token endpoint"))
        self.logins += 1

    def _grant_refresh(self) -> bool:
        response = self._token_request({"grant_type": "refresh_token", "refresh_token": self._refresh or ""})
        if response.status_code != 200:
            logger.info("token refresh refused (HTTP %s); logging in again", response.status_code)
            return False
        self._store(self._json(response, "the token endpoint"))
        self.refreshes += 1
        return True
