"""What the ``test_app_auth_*.py`` modules share: a token issuer, a MONAI Label server checking its JWTs, helpers.

Authentication end to end: a real MONAI Label server with ``MONAI_LABEL_AUTH_ENABLE=true`` checking real JWTs.
The tokens come from :mod:`keycloak_standin.issuer` running as its own process on 127.0.0.1 (realm document
with the public key, OpenID configuration, password and refresh grants). Nothing of MONAI Label's verification is
mocked: the server fetches the realm's key itself and checks signature, expiry and roles with its own ``RBAC``,
plus the app's changes (:mod:`monailabel_app.lib.compat.auth`).

One issuer, one checkpoint and one server for all those modules (session fixtures ``issuer``, ``auth_server``,
``url``, ``auth_image_png``, ...; ``tests/conftest.py`` registers them with ``pytest_plugins``). Test modules
import :func:`call`, :func:`expect` and the constants by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from keycloak_standin.issuer import DEFAULT_USERS, USER, TokenIssuer
from server_utils import MonaiLabelServer, copy_app, copy_studies

USERS = {**DEFAULT_USERS, "shortlived": {"password": "shortlived", "roles": [USER], "token_lifetime_s": 2}}
IMAGE = "image_000"
CONF = {
    "models": "dsanet,intrasense", "config": "small", "auto_retrain_after": "0", "bootstrap_min_labels": "0",
    "max_epochs": "1", "val_split": "0",
}


# ---- fixtures (registered for every test module by ``pytest_plugins`` in conftest.py) ---------------------------
@pytest.fixture(scope="session")
def issuer(tmp_path_factory):
    with TokenIssuer.start(users=USERS, workdir=tmp_path_factory.mktemp("issuer")) as running:
        yield running


@pytest.fixture(scope="session")
def auth_checkpoint(tmp_path_factory) -> Path:
    """A valid IntraSense-Net (small) checkpoint: the live weights of the server and the model upload."""
    from usseg_models.networks.checkpoint import save_checkpoint
    from usseg_models.networks.factory import build_network

    path = tmp_path_factory.mktemp("ckpt") / "intrasense_small.pt"
    return save_checkpoint(path, build_network("intrasense", "small"), "intrasense", "small")


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory, issuer, auth_checkpoint):
    tmp = tmp_path_factory.mktemp("auth_server")
    app = copy_app(tmp / "app")
    studies = copy_studies(tmp / "studies")
    env = {
        "MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": issuer.realm_uri,
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",  # no scoring job of its own: the scoring test starts one
    }
    srv = MonaiLabelServer(app, studies, conf={**CONF, "intrasense_pretrained_path": str(auth_checkpoint)}, env=env)
    srv.start()
    srv.studies_dir = studies
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def url(auth_server) -> str:
    return auth_server.url


@pytest.fixture(scope="module")
def tokens(issuer) -> dict[str, str]:
    """Fresh tokens per module (they expire after the issuer's lifetime)."""
    return {name: issuer.token(name) for name in ("admin", "annotator", "user", "nobody")}


@pytest.fixture(scope="session")
def auth_image_png(auth_server) -> Path:
    return auth_server.studies_dir / f"{IMAGE}.png"


@pytest.fixture(scope="session")
def label_png(auth_server) -> Path:
    return auth_server.studies_dir / "labels" / "final" / f"{IMAGE}.png"


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
