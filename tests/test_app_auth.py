"""Authentication end to end: a real MONAI Label server with ``MONAI_LABEL_AUTH_ENABLE=true`` checking real JWTs.

The tokens come from :mod:`monailabel_app.token_issuer` running as its own process on 127.0.0.1 (realm document
with the public key, OpenID configuration, password and refresh grants). Nothing of MONAI Label's verification is
mocked: the server fetches the realm's key itself and checks signature, expiry and roles with its own ``RBAC``,
plus the app's changes (:mod:`monailabel_app.lib.auth`). For each route group: no token → 401, a valid token
without the needed role → 403, the right role → 200. Then the USSegClip client logging in, renewing and retrying,
and ``scripts/serve`` refusing a public host without authentication.

One issuer and one server for the whole module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from server_utils import REPO_ROOT, MonaiLabelServer, copy_app, copy_studies

from monailabel_app.token_issuer import DEFAULT_USERS, USER, TokenIssuer

sys.path.insert(0, str(REPO_ROOT / "slicer_extension" / "USSegClip"))

from USSegClipLib import MonaiLabelClient, ServerResponseError  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]

USERS = {**DEFAULT_USERS, "shortlived": {"password": "shortlived", "roles": [USER], "token_lifetime_s": 2}}
IMAGE = "image_000"
CONF = {
    "models": "dsanet,intrasense", "config": "small", "auto_retrain_after": "0", "bootstrap_min_labels": "0",
    "max_epochs": "1", "val_split": "0",
}


# ---- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    with TokenIssuer.start(users=USERS, workdir=tmp_path_factory.mktemp("issuer")) as iss:
        yield iss


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A valid IntraSense-Net (small) checkpoint: the live weights of the server and the model upload."""
    from usseg_models.networks.checkpoint import save_checkpoint
    from usseg_models.networks.factory import build_network

    path = tmp_path_factory.mktemp("ckpt") / "intrasense_small.pt"
    return save_checkpoint(path, build_network("intrasense", "small"), "intrasense", "small")


@pytest.fixture(scope="module")
def server(tmp_path_factory, issuer, checkpoint):
    tmp = tmp_path_factory.mktemp("auth_server")
    app = copy_app(tmp / "app")
    studies = copy_studies(tmp / "studies")
    env = {
        "MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": issuer.realm_uri,
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",  # no scoring job of its own: the scoring test starts one
    }
    srv = MonaiLabelServer(app, studies, conf={**CONF, "intrasense_pretrained_path": str(checkpoint)}, env=env)
    srv.start()
    srv.studies_dir = studies
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def url(server) -> str:
    return server.url


@pytest.fixture(scope="module")
def tokens(issuer) -> dict[str, str]:
    return {name: issuer.token(name) for name in ("admin", "annotator", "user", "nobody")}


@pytest.fixture(scope="module")
def image_png(server) -> Path:
    return server.studies_dir / f"{IMAGE}.png"


@pytest.fixture(scope="module")
def label_png(server) -> Path:
    return server.studies_dir / "labels" / "final" / f"{IMAGE}.png"


def call(url, method, path, token=None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for value in (kwargs.get("files") or {}).values():  # a refused upload must be sent whole the next time
        if isinstance(value, tuple) and hasattr(value[1], "seek"):
            value[1].seek(0)
    return requests.request(method, f"{url}{path}", headers=headers, timeout=120, **kwargs)


def expect(url, method, path, tokens, allowed: str, denied: str, **kwargs) -> requests.Response:
    """No token → 401, ``denied``'s token → 403, ``allowed``'s token → 200; returns the 200 answer."""
    r = call(url, method, path, **kwargs)
    assert r.status_code == 401, f"{method} {path} without token: {r.status_code} {r.text[:200]}"
    assert r.headers.get("WWW-Authenticate") == "Bearer"
    r = call(url, method, path, tokens[denied], **kwargs)
    assert r.status_code == 403, f"{method} {path} as {denied}: {r.status_code} {r.text[:200]}"
    if method != "HEAD":
        assert "is required" in r.json()["detail"]
    r = call(url, method, path, tokens[allowed], **kwargs)
    assert r.status_code == 200, f"{method} {path} as {allowed}: {r.status_code} {r.text[:300]}"
    return r


# ---- open routes and the login ---------------------------------------------------------------------------
def test_info_is_open_and_auth_settings_name_the_realm(url, issuer):
    r = requests.get(f"{url}/info/", timeout=30)
    assert r.status_code == 200 and {"dsanet", "intrasense"} <= set(r.json()["models"])
    assert requests.get(f"{url}/info/", headers={"Authorization": "Bearer garbage"}, timeout=30).status_code == 200
    settings = requests.get(f"{url}/auth/", timeout=30).json()
    assert settings == {"enabled": True, "client_id": "monailabel-app", "realm": issuer.realm_uri}


def test_login_through_the_server(url):
    r = requests.post(f"{url}/auth/token", data={"username": "user", "password": "user"}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["refresh_token"]
    ok = call(url, "GET", "/datastore/?output=stats", body["access_token"])
    assert ok.status_code == 200 and ok.json()["total"] >= 1
    bad = requests.post(f"{url}/auth/token", data={"username": "user", "password": "wrong"}, timeout=30)
    assert bad.status_code == 401 and "Invalid user credentials" in bad.json()["detail"]


def test_token_without_roles_is_valid_but_admits_nothing(url, tokens):
    r = call(url, "GET", "/auth/token/valid", tokens["nobody"])
    assert r.status_code == 200 and r.json()["username"] == "nobody"
    assert call(url, "GET", "/auth/token/valid").status_code == 401


# ---- forged, tampered and expired tokens -------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_forged_and_tampered_tokens_are_refused(url, tokens, issuer):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    admin_claims = _claims(tokens["admin"])
    body = _b64(json.dumps(admin_claims).encode())
    own_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header, _, signature = tokens["user"].split(".")
    realm_key = requests.get(issuer.realm_uri, timeout=10).json()["public_key"]
    public_pem = f"-----BEGIN PUBLIC KEY-----\n{realm_key}\n-----END PUBLIC KEY-----".encode()
    hs_header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    hs_input = f"{hs_header}.{body}"
    hs_signature = _b64(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
    none_header = _b64(b'{"alg":"none","typ":"JWT"}')
    forged = {
        "signed with another key": jwt.encode(admin_claims, own_key, algorithm="RS256"),
        "user token with admin claims pasted in": f"{header}.{body}.{signature}",
        "alg none": f"{none_header}.{body}.",
        "HS256 keyed with the realm's public key": f"{hs_input}.{hs_signature}",
        "not a JWT": "abc.def.ghi",
    }
    for what, token in forged.items():
        r = call(url, "GET", "/datastore/?output=stats", token)
        assert r.status_code == 401, f"{what}: {r.status_code} {r.text[:200]}"
    assert call(url, "GET", "/datastore/?output=stats", tokens["admin"]).status_code == 200


def test_expired_token_is_refused(url, issuer):
    token = issuer.token("shortlived")
    assert call(url, "GET", "/datastore/?output=stats", token).status_code == 200
    time.sleep(_claims(token)["exp"] - time.time() + 1.1)
    r = call(url, "GET", "/datastore/?output=stats", token)
    assert r.status_code == 401, r.text


# ---- every route needs a token, and a role -------------------------------------------------------------------
OPEN = {("GET", "/info/"), ("GET", "/auth/"), ("POST", "/auth/token"), ("GET", "/"), ("GET", "/favicon.ico")}
HIDDEN = [  # routes MONAI Label leaves out of its OpenAPI document
    ("POST", "/reload"), ("PUT", "/datastore/"), ("DELETE", "/datastore/?id=x"),
    ("PUT", "/datastore/updatelabelinfo"), ("POST", "/train/"), ("POST", "/scoring/"),
    ("GET", "/ohif/index.html"), ("GET", "/proxy/dicom/qido/studies"), ("POST", "/proxy/dicom/stow/studies"),
    ("GET", "/proxy/dicom/x"),
]


def test_every_route_but_the_open_ones_needs_a_token_and_a_role(url, tokens):
    spec = requests.get(f"{url}/openapi.json", timeout=30).json()
    routes = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m.upper() != "HEAD"]
    assert len(routes) > 30, routes
    checked = 0
    for method, path in [*routes, *HIDDEN]:
        if (method, path.split("?")[0]) in OPEN:
            continue
        concrete = path.replace("{model}", "intrasense").replace("{path}", "x")
        for name in ("model", "strategy", "method", "session_id", "path"):
            concrete = concrete.replace("{" + name + "}", "x")
        no_token = call(url, method, concrete)
        assert no_token.status_code == 401, f"{method} {path} without token: {no_token.status_code}"
        expected = 200 if path == "/auth/token/valid" else 403
        no_role = call(url, method, concrete, tokens["nobody"])
        assert no_role.status_code == expected, f"{method} {path} without role: {no_role.status_code}"
        checked += 1
    assert checked >= 40


# ---- route groups: 401 / 403 / 200 ---------------------------------------------------------------------------
def test_datastore_read(url, tokens):
    stats = expect(url, "GET", "/datastore/?output=stats", tokens, "user", "nobody").json()
    assert stats["total"] >= 1
    assert expect(url, "GET", f"/datastore/image?image={IMAGE}", tokens, "user", "nobody").content
    assert expect(url, "GET", f"/datastore/label?label={IMAGE}&tag=final", tokens, "user", "nobody").content
    expect(url, "GET", f"/datastore/image/info?image={IMAGE}", tokens, "user", "nobody")
    expect(url, "HEAD", f"/datastore/image?image={IMAGE}", tokens, "user", "nobody")


def test_datastore_write_and_delete(url, tokens, image_png, label_png):
    new = "auth_upload"
    with open(image_png, "rb") as f:
        files = {"file": (f"{new}.png", f)}
        r = expect(url, "PUT", f"/datastore/image?image={new}", tokens, "annotator", "user", files=files,
                   data={"params": "{}"})
    assert r.json()["image"] == new
    stored = call(url, "GET", f"/datastore/image?image={new}", tokens["user"])
    assert stored.status_code == 200 and stored.content == image_png.read_bytes()

    with open(label_png, "rb") as f:
        files = {"label": (f"{new}.png", f)}
        r = call(url, "PUT", f"/datastore/label?image={new}&tag=final", files=files, data={"params": "{}"})
        assert r.status_code == 401
        r = call(url, "PUT", f"/datastore/label?image={new}&tag=final", tokens["user"], files=files,
                 data={"params": "{}"})
        assert r.status_code == 403
        # the refused requests stored nothing
        assert call(url, "GET", f"/datastore/label?label={new}&tag=final", tokens["user"]).status_code == 404
        r = call(url, "PUT", f"/datastore/label?image={new}&tag=final", tokens["annotator"], files=files,
                 data={"params": "{}"})
        assert r.status_code == 200, r.text
    assert call(url, "GET", f"/datastore/label?label={new}&tag=final", tokens["user"]).status_code == 200

    expect(url, "DELETE", f"/datastore/label?id={new}&tag=final", tokens, "admin", "annotator")
    expect(url, "DELETE", f"/datastore/image?id={new}", tokens, "admin", "annotator")
    assert call(url, "GET", f"/datastore/image?image={new}", tokens["user"]).status_code == 404


def test_infer(url, tokens):
    r = expect(url, "POST", f"/infer/intrasense?image={IMAGE}&output=json", tokens, "user", "nobody",
               data={"params": "{}"})
    assert r.headers["Content-Type"].startswith("application/json")


def test_activelearning(url, tokens):
    r = expect(url, "POST", "/activelearning/random", tokens, "user", "nobody", json={})
    assert r.json().get("id")


def test_session(url, tokens, image_png):
    with open(image_png, "rb") as f:
        r = expect(url, "PUT", "/session/", tokens, "user", "nobody", files={"files": (image_png.name, f)})
    session_id = r.json()["session_id"]
    expect(url, "GET", f"/session/{session_id}", tokens, "user", "nobody")
    expect(url, "DELETE", f"/session/{session_id}", tokens, "user", "nobody")


def test_scoring(url, tokens):
    expect(url, "POST", "/scoring/temporal_disagreement", tokens, "annotator", "user", json={})
    try:
        expect(url, "GET", "/scoring/", tokens, "user", "nobody")
    finally:
        expect(url, "DELETE", "/scoring/", tokens, "annotator", "user")


def test_train(url, tokens):
    expect(url, "POST", "/train/intrasense", tokens, "admin", "annotator", json={})
    try:
        assert expect(url, "GET", "/train/", tokens, "user", "nobody").json()
    finally:
        expect(url, "DELETE", "/train/", tokens, "admin", "annotator")


def test_model_upload_needs_admin(url, tokens, checkpoint):
    """MONAI Label itself admits annotators here; the app asks for the admin role, like training."""
    with open(checkpoint, "rb") as f:
        files = {"file": (checkpoint.name, f)}
        r = expect(url, "PUT", "/model/intrasense", tokens, "admin", "annotator", files=files)
    assert isinstance(r.json(), dict)
    assert expect(url, "GET", "/model/info/intrasense", tokens, "admin", "annotator").json()
    assert expect(url, "GET", "/model/intrasense", tokens, "admin", "annotator").content
    r = call(url, "DELETE", "/model/intrasense", tokens["annotator"])
    assert r.status_code == 403, r.text


def test_logs_and_batch_need_admin(url, tokens):
    expect(url, "GET", "/logs/?lines=5&text=true", tokens, "admin", "annotator")
    assert call(url, "POST", "/batch/infer/intrasense", tokens["annotator"], json={}).status_code == 403


def test_monai_label_client_logs_in_through_the_server(url, server):
    """MONAI Label's own Python client: ``/auth/`` says auth is on, ``/auth/token`` gives a token that works."""
    from monailabel.client.client import MONAILabelClient, MONAILabelClientException

    client = MONAILabelClient(url, tmpdir=str(server.app_dir / "ml_client"))
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


def test_client_logs_in_again_once_after_401(url, tokens, image_png, tmp_path):
    client = MonaiLabelClient(url, username="annotator", password="annotator")
    client.datastore("stats")
    client.auth._access = "revoked-token"  # what a token revoked by the realm looks like to the client
    new = "auth_client_upload"
    try:
        assert client.upload_image(image_png, new) == new  # refused once (401), sent again whole after a new login
        assert client.auth.logins == 2
        assert Path(client.download_image(new, tmp_path)).read_bytes() == image_png.read_bytes()
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


def test_accepted_algorithms_are_public_key_ones(monkeypatch):
    from monailabel_app.lib.auth import accepted_algorithms

    monkeypatch.delenv("USSEG_AUTH_ALGORITHMS", raising=False)
    assert accepted_algorithms() == ["RS256"]
    monkeypatch.setenv("USSEG_AUTH_ALGORITHMS", "RS512, PS256")
    assert accepted_algorithms() == ["RS512", "PS256"]
    for bad in ("none", "RS256,HS256", "hs512"):
        monkeypatch.setenv("USSEG_AUTH_ALGORITHMS", bad)
        with pytest.raises(ValueError, match="public-key"):
            accepted_algorithms()


# ---- scripts/serve --------------------------------------------------------------------------------------------
def _serve(args, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if k not in ("MONAI_LABEL_AUTH_ENABLE", "USSEG_INSECURE_PUBLIC",
                                                             "USSEG_HOST")}
    env.update(env_extra or {})
    proc = subprocess.Popen([str(REPO_ROOT / "scripts" / "serve"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"scripts/serve {args} did not exit: it went on to set up or start a server")
    return proc.returncode, out + err


@pytest.mark.parametrize(
    "args,env",
    [
        (["--host", "0.0.0.0"], {}),
        (["--host=10.1.2.3", "--port", "8123"], {}),
        (["-i", "192.168.1.20"], {}),
        ([], {"USSEG_HOST": "0.0.0.0"}),
        (["--host", "0.0.0.0"], {"MONAI_LABEL_AUTH_ENABLE": "false"}),
    ],
)
def test_serve_refuses_a_public_host_without_auth(args, env):
    start = time.monotonic()
    code, output = _serve(args, env)
    assert code == 2, output
    assert "refusing to serve on host" in output and "MONAI_LABEL_AUTH_ENABLE=true" in output
    assert "--insecure-public" in output
    assert time.monotonic() - start < 30  # refused before any set-up


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    "args,env",
    [
        (["--host", "127.0.0.1"], {}),
        (["--host", "localhost"], {}),
        (["--host", "::1"], {}),
        (["--host", "0.0.0.0"], {"MONAI_LABEL_AUTH_ENABLE": "true"}),
        (["--host", "0.0.0.0", "--insecure-public"], {}),
        (["--host", "0.0.0.0"], {"USSEG_INSECURE_PUBLIC": "1"}),
    ],
)
def test_serve_accepts_loopback_auth_or_an_explicit_opt_out(args, env):
    code, output = _serve([*args, "--check-host"], env)
    assert code == 0 and "host check passed" in output, output


# ---- last: reloading the app keeps every check (the app is built anew; install_auth runs again) -------------
def test_reload_needs_admin_and_the_checks_survive_it(url, tokens):
    """``POST /reload`` has no check in MONAI Label (anyone could reload the app); the app asks for admin."""
    expect(url, "POST", "/reload", tokens, "admin", "annotator")
    assert requests.get(f"{url}/info/", timeout=120).status_code == 200  # builds the app again
    expect(url, "GET", "/datastore/?output=stats", tokens, "user", "nobody")
    with open(REPO_ROOT / "README.md", "rb") as f:  # still admin only, not a second unchecked copy
        r = call(url, "PUT", "/model/intrasense", tokens["annotator"], files={"file": ("x.pt", f)})
    assert r.status_code == 403
    assert call(url, "POST", "/reload").status_code == 401
