"""Authentication end to end (:mod:`app_auth_fixtures`): clients logging in, renewing their token and retrying.

MONAI Label's own Python client, and the USSegClip client: one login, its token sent with each request, renewal
before expiry, one new login after a 401, refused logins reported, and no login where the server has auth off.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from app_auth_fixtures import USERS, call
from keycloak_standin.issuer import TokenIssuer
from server_utils import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "slicer_extension" / "USSegClip"))

from USSegClipLib import MonaiLabelClient, ServerResponseError  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_monai_label_client_logs_in_through_the_server(url, auth_server):
    """MONAI Label's own Python client: ``/auth/`` says auth is on, ``/auth/token`` gives a token that works."""
    from monailabel.client.client import MONAILabelClient, MONAILabelClientException

    client = MONAILabelClient(url, tmpdir=str(auth_server.app_dir / "ml_client"))
    assert client.auth_enabled()
    with pytest.raises(MONAILabelClientException):
        client.datastore()  # no token yet
    with pytest.raises(MONAILabelClientException) as refused:
        client.auth_token("user", "wrong")
    assert refused.value.status_code == 401
    client.update_auth(client.auth_token("user", "user"))
    assert client.auth_valid_token()
    assert client.datastore()["objects"]
    assert client.next_sample("first", {}).get("id")



# ---- the USSegClip client ----------------------------------------------------------------------------------
def test_client_logs_in_once_and_sends_its_token(url):
    with MonaiLabelClient(url, username="annotator", password="annotator") as client:
        assert {"dsanet", "intrasense"} <= set(client.info()["models"])
        assert client.datastore("stats")["total"] >= 1
        assert client.next_sample("first").get("id")
        with pytest.raises(ServerResponseError) as refused:
            client.start_training("intrasense")
        assert refused.value.status == 403
        assert client.auth.logins == 1 and client.auth.refreshes == 0


def test_client_reports_a_refused_login(url):
    client = MonaiLabelClient(url, username="annotator", password="wrong")
    with pytest.raises(ServerResponseError) as refused:
        client.datastore("stats")
    assert refused.value.status == 401 and "Invalid user credentials" in str(refused.value)
    with pytest.raises(ServerResponseError) as no_token:
        MonaiLabelClient(url).datastore("stats")
    assert no_token.value.status == 401
    with pytest.raises(ValueError):
        MonaiLabelClient(url, token="x", username="user", password="user")


def test_client_with_a_given_token(url, issuer):
    assert MonaiLabelClient(url, token=issuer.token("user")).datastore("stats")["total"] >= 1


def test_client_renews_a_token_before_it_expires(url):
    client = MonaiLabelClient(url, username="shortlived", password="shortlived")
    client.datastore("stats")
    time.sleep(2.2)  # the token lives 2 s
    client.datastore("stats")
    assert client.auth.logins == 1 and client.auth.refreshes == 1


def test_client_logs_in_again_once_after_401(url, tokens, auth_image_png, tmp_path):
    client = MonaiLabelClient(url, username="annotator", password="annotator")
    client.datastore("stats")
    client.auth._access = "revoked-token"  # what a token revoked by the realm looks like to the client
    new = "auth_client_upload"
    try:
        assert client.upload_image(auth_image_png, new) == new  # refused once (401), sent again whole after a new login
        assert client.auth.logins == 2
        assert Path(client.download_image(new, tmp_path)).read_bytes() == auth_image_png.read_bytes()
    finally:
        call(url, "DELETE", f"/datastore/image?id={new}", tokens["admin"])


def test_client_gives_up_after_one_new_login(url, tmp_path):
    """Tokens from a realm the server does not trust: one login, one new login after the 401, then the error."""
    with TokenIssuer.start(users=USERS, workdir=tmp_path) as stranger:
        client = MonaiLabelClient(url, username="user", password="user", token_url=stranger.token_endpoint)
        with pytest.raises(ServerResponseError) as refused:
            client.datastore("stats")
        assert refused.value.status == 401
        assert stranger.counts()["password"] == 2


def test_client_credentials_against_a_server_without_auth():
    """Auth off (``GET /auth/`` is 404 then): the client sends no token and does not try to log in."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            body = b'{"total": 1}' if self.path.startswith("/datastore/") else b'{"detail": "Not Found"}'
            self.send_response(200 if self.path.startswith("/datastore/") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = MonaiLabelClient(f"http://127.0.0.1:{httpd.server_address[1]}", username="u", password="p")
        assert client.datastore("stats") == {"total": 1}
        assert client.datastore("stats") == {"total": 1}
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen[0] == ("/auth/", None)  # asked once whether auth is on
    assert [p for p, _ in seen[1:]] == ["/datastore/?output=stats"] * 2 and all(a is None for _, a in seen)
    assert client.auth.logins == 0

