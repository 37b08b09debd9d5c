"""One realm of the token issuer (:mod:`keycloak_standin.issuer`): users, RSA key, documents and tokens; no HTTP.

:class:`Realm` holds what a Keycloak realm holds for MONAI Label: an RSA key (kept in a PEM file or made in
memory), a user table (:data:`DEFAULT_USERS` or a caller's), the realm document, the OpenID configuration and the
JWK set, and the token endpoint's logic: the password and refresh grants, answered with Keycloak's body
(``access_token``, ``expires_in``, ``refresh_token``, ``refresh_expires_in``, ``token_type``). Wrong credentials
→ 401 ``invalid_grant``; unknown client → 401 ``invalid_client``; other grants → 400.

Access tokens are RS256 JWTs with Keycloak's claims: ``iss``, ``sub``, ``aud`` ("account"), ``azp`` (the client
id), ``typ`` ("Bearer"), ``exp``/``iat``/``jti``, ``preferred_username``, ``email``, ``name`` and
``realm_access.roles``. Refresh tokens are signed by the same key and checked against it.
"""

from __future__ import annotations

import base64
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ADMIN", "REVIEWER", "ANNOTATOR", "USER", "DEFAULT_CLIENT_ID", "DEFAULT_REALM", "DEFAULT_LIFETIME_S",
    "REFRESH_LIFETIME_S", "DEFAULT_USERS", "Realm",
]

ADMIN, REVIEWER, ANNOTATOR, USER = "monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"
DEFAULT_CLIENT_ID = "monailabel-app"
DEFAULT_REALM = "monailabel"
DEFAULT_LIFETIME_S = 300
REFRESH_LIFETIME_S = 1800

# username -> {"password", "roles", optional "email", "name", "token_lifetime_s"}. MONAI Label's roles are not
# hierarchical (a route admits the one role it names), so each account holds every role up to its level, as a
# Keycloak composite role would give it.
DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "admin": {"password": "admin", "roles": [ADMIN, REVIEWER, ANNOTATOR, USER]},
    "reviewer": {"password": "reviewer", "roles": [REVIEWER, ANNOTATOR, USER]},
    "annotator": {"password": "annotator", "roles": [ANNOTATOR, USER]},
    "user": {"password": "user", "roles": [USER]},
    "nobody": {"password": "nobody", "roles": ["offline_access"]},
}


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class Realm:
    """One realm: an RSA key, a user table and the token logic (no HTTP).

    Args:
        base_url: the issuer's address, e.g. ``http://127.0.0.1:8080``.
        name: realm name (the realm URI is ``<base_url>/realms/<name>``).
        users: user table (see :data:`DEFAULT_USERS`).
        client_id: the only client accepted at the token endpoint.
        lifetime_s: access token lifetime (a user's ``token_lifetime_s`` overrides it).
        key_path: PEM file of the RSA private key; created (mode 0600) when missing. Default: a new key in memory.
    """

    def __init__(
        self,
        base_url: str,
        name: str = DEFAULT_REALM,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        key_path: str | os.PathLike | None = None,
    ) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.name = name
        self.uri = f"{base_url.rstrip('/')}/realms/{name}"
        self.users = {u: dict(v) for u, v in (users if users is not None else DEFAULT_USERS).items()}
        self.client_id = client_id
        self.lifetime_s = int(lifetime_s)
        if key_path and Path(key_path).is_file():
            self.key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if key_path:
                pem = self.key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key_b64 = base64.b64encode(der).decode("ascii")
        self.kid = uuid.uuid5(uuid.NAMESPACE_OID, self.public_key_b64).hex
        self.counts = {"password": 0, "refresh_token": 0, "refused": 0}
        self._lock = threading.Lock()

    # ---- documents -------------------------------------------------------------------------------------
    def realm_document(self) -> dict[str, Any]:
        return {
            "realm": self.name,
            "public_key": self.public_key_b64,
            "token-service": f"{self.uri}/protocol/openid-connect",
            "account-service": f"{self.uri}/account",
            "tokens-not-before": 0,
        }

    def openid_configuration(self) -> dict[str, Any]:
        oidc = f"{self.uri}/protocol/openid-connect"
        return {
            "issuer": self.uri,
            "token_endpoint": f"{oidc}/token",
            "jwks_uri": f"{oidc}/certs",
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "claims_supported": ["sub", "iss", "preferred_username", "email", "name", "realm_access"],
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {"kid": self.kid, "kty": "RSA", "alg": "RS256", "use": "sig",
                 "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
            ]
        }

    # ---- tokens ----------------------------------------------------------------------------------------
    def _sign(self, claims: dict[str, Any]) -> str:
        import jwt

        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def issue(self, username: str) -> dict[str, Any]:
        """Keycloak's token answer for ``username`` (no password check)."""
        user = self.users[username]
        now = int(time.time())
        lifetime = int(user.get("token_lifetime_s", self.lifetime_s))
        sub = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.uri}/{username}"))
        session = str(uuid.uuid4())
        access = {
            "exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4()), "iss": self.uri, "aud": "account",
            "sub": sub, "typ": "Bearer", "azp": self.client_id, "sid": session, "scope": "openid profile email",
            "preferred_username": username, "email": user.get("email", f"{username}@example.org"),
            "name": user.get("name", username), "realm_access": {"roles": list(user.get("roles", []))},
        }
        refresh = {
            "exp": now + REFRESH_LIFETIME_S, "iat": now, "jti": str(uuid.uuid4()), "iss": self.uri,
            "aud": self.uri, "sub": sub, "typ": "Refresh", "azp": self.client_id, "sid": session,
            "preferred_username": username,
        }
        return {
            "access_token": self._sign(access), "expires_in": lifetime,
            "refresh_token": self._sign(refresh), "refresh_expires_in": REFRESH_LIFETIME_S,
            "token_type": "Bearer", "not-before-policy": 0, "session_state": session,
            "scope": "openid profile email",
        }

    def token_endpoint(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer a token request: ``(HTTP status, JSON body)``."""
        import jwt

        if form.get("client_id") != self.client_id:
            return self._refuse(401, "invalid_client", "Invalid client or Invalid client credentials")
        grant = form.get("grant_type")
        if grant == "password":
            user = self.users.get(form.get("username", ""))
            if user is None or str(user.get("password")) != form.get("password"):
                return self._refuse(401, "invalid_grant", "Invalid user credentials")
            self._count("password")
            return 200, self.issue(form["username"])
        if grant == "refresh_token":
            try:
                claims = jwt.decode(
                    form.get("refresh_token", ""), self.key.public_key(), algorithms=["RS256"], audience=self.uri
                )
            except jwt.InvalidTokenError:
                return self._refuse(400, "invalid_grant", "Invalid refresh token")
            username = claims.get("preferred_username", "")
            if claims.get("typ") != "Refresh" or claims.get("azp") != self.client_id or username not in self.users:
                return self._refuse(400, "invalid_grant", "Invalid refresh token")
            self._count("refresh_token")
            return 200, self.issue(username)
        return self._refuse(400, "unsupported_grant_type", f"Unsupported grant_type {grant!r}")

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _refuse(self, code: int, error: str, description: str) -> tuple[int, dict[str, Any]]:
        self._count("refused")
        return code, {"error": error, "error_description": description}

