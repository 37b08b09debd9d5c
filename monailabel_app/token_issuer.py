"""A small stand-in for a Keycloak realm: issues the JWTs MONAI Label's authentication checks (tests, local trials).

It serves, for one realm, what MONAI Label and its clients call on Keycloak:

* ``GET  /realms/<realm>`` → ``{"realm", "public_key", "token-service", ...}``; ``public_key`` is the base64 DER
  of the RSA public key without PEM armour, as Keycloak publishes it (MONAI Label wraps it in PEM itself);
* ``GET  /realms/<realm>/.well-known/openid-configuration`` → ``issuer``, ``token_endpoint``, ``jwks_uri``, ...;
* ``GET  /realms/<realm>/protocol/openid-connect/certs`` → the key as a JWK set;
* ``POST /realms/<realm>/protocol/openid-connect/token`` (form) with ``grant_type=password`` (``client_id``,
  ``username``, ``password``) or ``grant_type=refresh_token`` (``client_id``, ``refresh_token``). The answer is
  Keycloak's: ``access_token``, ``expires_in``, ``refresh_token``, ``refresh_expires_in``, ``token_type``.
  Wrong credentials → 401 ``invalid_grant``; unknown client → 401 ``invalid_client``; other grants → 400.

Access tokens are RS256 JWTs with Keycloak's claims: ``iss``, ``sub``, ``aud`` ("account"), ``azp`` (the client
id), ``typ`` ("Bearer"), ``exp``/``iat``/``jti``, ``preferred_username``, ``email``, ``name`` and
``realm_access.roles``. The users and their roles come from a JSON file (``--users``) or :data:`DEFAULT_USERS`.

It is a test tool, not an identity provider: it binds only loopback addresses, keeps users with plain-text
passwords, and has no revocation. Use Keycloak in production (see ``monailabel_app/README.md``).

Run it::

    python -m monailabel_app.token_issuer --port 8080            # realm http://127.0.0.1:8080/realms/monailabel
    MONAI_LABEL_AUTH_ENABLE=true MONAI_LABEL_AUTH_REALM_URI=http://127.0.0.1:8080/realms/monailabel scripts/serve

It prints ``REALM_URI=<url>`` on one line once it answers. From Python (tests)::

    with TokenIssuer.start(users={"ann": {"password": "pw", "roles": ["monailabel-user"]}}) as issuer:
        token = issuer.token("ann", "pw")
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["DEFAULT_USERS", "DEFAULT_CLIENT_ID", "Realm", "TokenIssuer", "serve", "main"]

ADMIN, REVIEWER, ANNOTATOR, USER = "monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"
DEFAULT_CLIENT_ID = "monailabel-app"
DEFAULT_REALM = "monailabel"
DEFAULT_LIFETIME_S = 300
REFRESH_LIFETIME_S = 1800
LOOPBACK = ("127.0.0.1", "localhost", "::1")

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


def _handler(realm: Realm):
    prefix = f"/realms/{realm.name}"

    class Handler(BaseHTTPRequestHandler):
        server_version = "usseg-token-issuer"

        def log_message(self, fmt, *args):  # one line per request on stderr, without the default noise
            code = args[1] if len(args) > 1 else ""
            sys.stderr.write(f"[token-issuer] {self.command} {self.path.split('?')[0]} {code}\n")

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = urlsplit(self.path).path.rstrip("/")
            documents = {
                prefix: realm.realm_document,
                f"{prefix}/.well-known/openid-configuration": realm.openid_configuration,
                f"{prefix}/protocol/openid-connect/certs": realm.jwks,
                "/usseg/counts": lambda: dict(realm.counts),
            }
            if path in documents:
                self._send(200, documents[path]())
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            if urlsplit(self.path).path.rstrip("/") != f"{prefix}/protocol/openid-connect/token":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > 64 * 1024:
                self._send(413, {"error": "invalid_request", "error_description": "request too large"})
                return
            body = self.rfile.read(length).decode("utf-8", errors="replace")
            form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
            self._send(*realm.token_endpoint(form))

    return Handler


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    realm_name: str = DEFAULT_REALM,
    users: Mapping[str, Mapping[str, Any]] | None = None,
    client_id: str = DEFAULT_CLIENT_ID,
    lifetime_s: int = DEFAULT_LIFETIME_S,
    key_path: str | os.PathLike | None = None,
) -> tuple[ThreadingHTTPServer, Realm]:
    """Bind the issuer (not yet serving; call ``serve_forever``). ``port=0`` takes a free port.

    Raises:
        ValueError: ``host`` is not a loopback address.
    """
    if host not in LOOPBACK:
        raise ValueError(f"the token issuer is a test tool and binds only loopback addresses {LOOPBACK}, not {host!r}")
    server_class = ThreadingHTTPServer
    if ":" in host:
        import socket

        server_class = type("IPv6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    realm = Realm("http://127.0.0.1", realm_name, users, client_id, lifetime_s, key_path)
    httpd = server_class((host, port), _handler(realm))
    shown = f"[{host}]" if ":" in host else host
    realm.uri = f"http://{shown}:{httpd.server_address[1]}/realms/{realm_name}"
    return httpd, realm


class TokenIssuer:
    """The issuer in a child process (``python -m monailabel_app.token_issuer``), for tests.

    Use :meth:`start` as a context manager; ``realm_uri`` is what ``MONAI_LABEL_AUTH_REALM_URI`` should be.
    """

    def __init__(self, proc: subprocess.Popen, realm_uri: str, users: Mapping[str, Mapping[str, Any]]):
        self.proc = proc
        self.realm_uri = realm_uri
        self.users = users
        self.token_endpoint = f"{realm_uri}/protocol/openid-connect/token"

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        workdir: str | os.PathLike | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        timeout: float = 30.0,
    ):
        import tempfile

        users = dict(users if users is not None else DEFAULT_USERS)
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            users_file = Path(tmp) / "users.json"
            users_file.write_text(json.dumps(users))
            cmd = [sys.executable, "-m", "monailabel_app.token_issuer", "--port", "0", "--users", str(users_file),
                   "--client-id", client_id]
            env = dict(os.environ)
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
            log = open(Path(tmp) / "issuer.log", "wb")  # noqa: SIM115 - closed below
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
            try:
                realm_uri = cls._read_uri(proc, timeout, Path(tmp) / "issuer.log")
                yield cls(proc, realm_uri, users)
            finally:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(timeout=10)
                proc.stdout.close()
                log.close()

    @staticmethod
    def _read_uri(proc: subprocess.Popen, timeout: float, log: Path) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(proc.stdout.readline().decode()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = result[0].strip() if result else ""
        if not line.startswith("REALM_URI="):
            raise RuntimeError(f"token issuer did not start (exit {proc.poll()}): {line!r}\n{log.read_text()[-2000:]}")
        return line.split("=", 1)[1]

    def token(self, username: str, password: str | None = None) -> str:
        """An access token for ``username`` from the token endpoint (password from the user table by default)."""
        import requests

        password = password if password is not None else self.users[username]["password"]
        r = requests.post(
            self.token_endpoint,
            data={"grant_type": "password", "client_id": DEFAULT_CLIENT_ID, "username": username, "password": password},
            timeout=10,
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def counts(self) -> dict[str, int]:
        """How many password and refresh grants were given, and how many requests were refused."""
        import requests

        return requests.get(self.realm_uri.split("/realms/")[0] + "/usseg/counts", timeout=10).json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monailabel_app.token_issuer",
        description="Local Keycloak stand-in issuing MONAI Label tokens (tests and trials; loopback only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (127.0.0.1, localhost, ::1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0: a free one); default 8080")
    parser.add_argument("--realm", default=DEFAULT_REALM, help="realm name (default monailabel)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="client id accepted at the token endpoint")
    parser.add_argument("--users", help="JSON file {username: {password, roles, [email, name, token_lifetime_s]}}; "
                                        "default: admin/admin, reviewer/reviewer, annotator/annotator, user/user, "
                                        "nobody/nobody")
    parser.add_argument("--lifetime", type=int, default=DEFAULT_LIFETIME_S, help="access token lifetime in seconds")
    parser.add_argument("--key", help="PEM file of the RSA key, created when missing (tokens stay valid across "
                                      "restarts; MONAI Label caches the realm's key until it restarts)")
    args = parser.parse_args(argv)
    users = json.loads(Path(args.users).read_text()) if args.users else None
    try:
        httpd, realm = serve(args.host, args.port, args.realm, users, args.client_id, args.lifetime, args.key)
    except (ValueError, OSError) as exc:
        print(f"token issuer: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    print(f"REALM_URI={realm.uri}", flush=True)
    print(f"[token-issuer] realm {realm.uri}; users: {', '.join(sorted(realm.users))}", file=sys.stderr, flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
