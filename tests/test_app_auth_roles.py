"""Authentication end to end (:mod:`app_auth_fixtures`): every route needs a token, and the right role.

Every route but the open ones refuses a missing token (401) and a token without roles (403). For each route group:
no token → 401, a valid token without the needed role → 403, the right role → 200. Last, ``POST /reload``: the
app is built anew and every check survives it. That is the last test on the shared server: this module's name
sorts after the other ``test_app_auth_*.py`` modules that use it.
"""

from __future__ import annotations

import pytest
import requests
from app_auth_fixtures import IMAGE, call, expect
from server_utils import REPO_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]


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


def test_datastore_write_and_delete(url, tokens, auth_image_png, label_png):
    new = "auth_upload"
    with open(auth_image_png, "rb") as f:
        files = {"file": (f"{new}.png", f)}
        r = expect(url, "PUT", f"/datastore/image?image={new}", tokens, "annotator", "user", files=files,
                   data={"params": "{}"})
    assert r.json()["image"] == new
    stored = call(url, "GET", f"/datastore/image?image={new}", tokens["user"])
    assert stored.status_code == 200 and stored.content == auth_image_png.read_bytes()

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


def test_session(url, tokens, auth_image_png):
    with open(auth_image_png, "rb") as f:
        r = expect(url, "PUT", "/session/", tokens, "user", "nobody", files={"files": (auth_image_png.name, f)})
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


def test_model_upload_needs_admin(url, tokens, auth_checkpoint):
    """MONAI Label itself admits annotators here; the app asks for the admin role, like training."""
    with open(auth_checkpoint, "rb") as f:
        files = {"file": (auth_checkpoint.name, f)}
        r = expect(url, "PUT", "/model/intrasense", tokens, "admin", "annotator", files=files)
    assert isinstance(r.json(), dict)
    assert expect(url, "GET", "/model/info/intrasense", tokens, "admin", "annotator").json()
    assert expect(url, "GET", "/model/intrasense", tokens, "admin", "annotator").content
    r = call(url, "DELETE", "/model/intrasense", tokens["annotator"])
    assert r.status_code == 403, r.text


def test_logs_and_batch_need_admin(url, tokens):
    expect(url, "GET", "/logs/?lines=5&text=true", tokens, "admin", "annotator")
    assert call(url, "POST", "/batch/infer/intrasense", tokens["annotator"], json={}).status_code == 403


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
