"""Authentication end to end (:mod:`app_auth_fixtures`): the open routes, logging in, and which JWTs are accepted.

``/info`` and ``/auth`` need no token; the server hands out tokens for good credentials; a token without roles is
valid but admits nothing; forged, tampered and expired tokens are refused; only public-key algorithms are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests
from app_auth_fixtures import call

pytestmark = [pytest.mark.server, pytest.mark.slow]


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


def test_accepted_algorithms_are_public_key_ones(monkeypatch):
    from monailabel_app.lib.compat.auth import accepted_algorithms

    monkeypatch.delenv("USSEG_AUTH_ALGORITHMS", raising=False)
    assert accepted_algorithms() == ["RS256"]
    monkeypatch.setenv("USSEG_AUTH_ALGORITHMS", "RS512, PS256")
    assert accepted_algorithms() == ["RS512", "PS256"]
    for bad in ("none", "RS256,HS256", "hs512"):
        monkeypatch.setenv("USSEG_AUTH_ALGORITHMS", bad)
        with pytest.raises(ValueError, match="public-key"):
            accepted_algorithms()

