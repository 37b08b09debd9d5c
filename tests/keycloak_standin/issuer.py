"""A small stand-in for a Keycloak realm: issues the JWTs MONAI Label's authentication checks (tests, local trials).

This module is the issuer's HTTP side and command line; the realm itself (users, key, tokens) is
:mod:`keycloak_standin.realm` and the child-process wrapper for tests :mod:`keycloak_standin.process`
(both re-exported here). It serves, for one realm, what MONAI Label and its clients call on Keycloak:

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

    python -m keycloak_standin.issuer --port 8080            # realm http://127.0.0.1:8080/realms/monailabel
    MONAI_LABEL_AUTH_ENABLE=true MONAI_LABEL_AUTH_REALM_URI=http://127.0.0.1:8080/realms/monailabel scripts/serve

It prints ``REALM_URI=<url>`` on one line once it answers. From Python (tests)::

    with TokenIssuer.start(users={"ann": {"password": "pw", "roles": ["monailabel-user"]}}) as issuer:
        token = issuer.token("ann", "pw")
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keycloak_standin.process import TokenIssuer
from keycloak_standin.realm import (
    ADMIN,
    ANNOTATOR,
    DEFAULT_CLIENT_ID,
    DEFAULT_LIFETIME_S,
    DEFAULT_REALM,
    DEFAULT_USERS,
    REFRESH_LIFETIME_S,
    REVIEWER,
    USER,
    Realm,
)

__all__ = [
    "DEFAULT_USERS", "DEFAULT_CLIENT_ID", "Realm", "TokenIssuer", "serve", "main",
    # also importable from here, as before the realm and the child process had modules of their own
    "ADMIN", "REVIEWER", "ANNOTATOR", "USER", "DEFAULT_REALM", "DEFAULT_LIFETIME_S", "REFRESH_LIFETIME_S", "LOOPBACK",
]

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _handler(realm: Realm):
    prefix = f"/realms/{realm.name}"

    class Handler(BaseHTTPRequestHandler):
        server_version = "usseg-token-issuer"

        def log_message(self, fmt, *args):  # one line per request on stderr, without the default noise
            code = args[1] if len(args) > 1 else ""
            logger.info("[token-issuer] %s %s %s", self.command, self.path.split("?")[0], code)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keycloak_standin.issuer",
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
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")  # one plain line per message
    users = json.loads(Path(args.users).read_text()) if args.users else None
    try:
        httpd, realm = serve(args.host, args.port, args.realm, users, args.client_id, args.lifetime, args.key)
    except (ValueError, OSError) as exc:
        logger.error("token issuer: %s", exc)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    print(f"REALM_URI={realm.uri}", flush=True)  # the program's output on stdout (TokenIssuer reads it), not a log
    logger.info("[token-issuer] realm %s; users: %s", realm.uri, ", ".join(sorted(realm.users)))
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
