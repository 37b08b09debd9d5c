"""MONAI Label's own authentication (``MONAI_LABEL_AUTH_ENABLE``), made to work and closed over every route.

MONAI Label 0.8.5 checks a bearer JWT on each route with ``RBAC(role)`` (:mod:`monailabel.endpoints.user.auth`):
the token's signature is verified against the realm's public key (``GET MONAI_LABEL_AUTH_REALM_URI`` → the
``public_key`` field, Keycloak's format; fetched on the first authenticated request and cached for the life of the
process), ``exp`` is checked, and the roles are read from the ``realm_access.roles`` claim
(``MONAI_LABEL_AUTH_TOKEN_ROLES``). A route admits a token that holds its one role; roles are not hierarchical.

Used as shipped, it has these gaps, which :func:`install_auth` closes in the server process:

* **Every token is refused.** It calls ``jwt.decode`` without ``algorithms``, which PyJWT 2 rejects
  (``DecodeError``), so each request answers 401. The verification is kept as it is; only the accepted
  algorithms are supplied: ``RS256`` (Keycloak's default), or the comma-separated list in
  ``USSEG_AUTH_ALGORITHMS`` (``none`` and the HMAC family are never accepted: the key is public).
* **``POST /reload`` has no check at all** (anyone may reload the app): it now needs ``monailabel-admin``.
  Any other route found without MONAI Label's check gets the same admin check (fail closed); the only
  routes left open are :data:`OPEN_ROUTES` (API documentation, the login routes and ``GET /info/``).
* **``PUT``/``DELETE /model/{name}`` admit annotators** (their summaries say admin): they now need
  ``monailabel-admin``, like training.
* **``GET /info/`` needs a token**, so clients cannot discover the server (or wait for it) before logging
  in: it is open (it shows model names, labels, training statistics and datastore counts, no images).
* **Realm trouble answers 500**: an unreachable realm while verifying a token answers 503; ``POST /auth/token``
  (MONAI Label's login proxy) answers 401 for wrong credentials and 503 when the realm cannot be reached,
  and passes on the whole token answer (``expires_in``, ``refresh_token``).

Nothing changes when ``MONAI_LABEL_AUTH_ENABLE`` is false.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from typing import Any

import requests
from fastapi import Depends, HTTPException, status
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordRequestForm
from monailabel.config import settings

from monailabel_app.lib.compat.routes import api_routes, find_route, shadow_route

__all__ = ["OPEN_ROUTES", "DEFAULT_ALGORITHMS", "accepted_algorithms", "install_auth", "route_roles"]

logger = logging.getLogger(__name__)

DEFAULT_ALGORITHMS = ("RS256",)

# (method, path) pairs reachable without a token when auth is on
OPEN_ROUTES = frozenset(
    {
        ("GET", "/"),  # API documentation (Swagger UI page)
        ("GET", "/favicon.ico"),
        ("GET", "/info/"),
        ("GET", "/auth/"),  # whether auth is on, the realm and client id: what a client needs to log in
        ("POST", "/auth/token"),  # the login itself
    }
)


def accepted_algorithms() -> list[str]:
    """JWT signature algorithms accepted for tokens: ``USSEG_AUTH_ALGORITHMS`` or :data:`DEFAULT_ALGORITHMS`.

    Raises:
        ValueError: the list is empty or names ``none`` or an HMAC (``HS*``) algorithm.
    """
    raw = os.environ.get("USSEG_AUTH_ALGORITHMS", "")
    algorithms = [a.strip() for a in raw.split(",") if a.strip()] or list(DEFAULT_ALGORITHMS)
    bad = [a for a in algorithms if a.lower() == "none" or a.upper().startswith("HS")]
    if bad:
        raise ValueError(f"USSEG_AUTH_ALGORITHMS must name public-key algorithms (e.g. RS256), not {bad}")
    return algorithms


def _prefixed(path: str) -> str:
    return f"{settings.MONAI_LABEL_API_STR}{path}"


def _jwt_with_algorithms(jwt_module: types.ModuleType, algorithms: list[str]) -> types.SimpleNamespace:
    """A stand-in for the ``jwt`` module whose ``decode`` passes the accepted ``algorithms``."""

    def decode(token, key, *args, **kwargs):
        kwargs.setdefault("algorithms", algorithms)
        try:
            return jwt_module.decode(token, key, *args, **kwargs)
        except jwt_module.exceptions.InvalidKeyError as exc:  # the realm published a key PyJWT cannot use
            logger.error("the realm's public key cannot verify %s tokens: %s", algorithms, exc)
            raise HTTPException(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"cannot verify tokens: the realm's public key does not fit {algorithms} ({exc})",
            ) from exc

    namespace = types.SimpleNamespace(**{k: getattr(jwt_module, k) for k in dir(jwt_module) if not k.startswith("__")})
    namespace.decode = decode
    namespace.usseg_algorithms = list(algorithms)
    return namespace


def _public_key_or_503(get_public_key):
    def fetch(realm_uri: str) -> str:
        try:
            return get_public_key(realm_uri)
        except (requests.RequestException, KeyError, ValueError, TypeError) as exc:
            logger.error("cannot fetch the public key of realm %s: %s", realm_uri, exc)
            raise HTTPException(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"cannot verify tokens: the public key of realm {realm_uri} is unavailable "
                f"({type(exc).__name__})",
            ) from exc

    fetch.usseg_wrapped = get_public_key
    return fetch


def _patch_verification() -> None:
    """Give MONAI Label's ``from_token`` the algorithms it needs and a 503 for an unreachable realm."""
    from monailabel.endpoints.user import auth as ml_auth

    if not getattr(ml_auth.jwt, "usseg_algorithms", None):
        ml_auth.jwt = _jwt_with_algorithms(ml_auth.jwt, accepted_algorithms())
    if not getattr(ml_auth.get_public_key, "usseg_wrapped", None):
        ml_auth.get_public_key = _public_key_or_503(ml_auth.get_public_key)


def _has_auth(dependant) -> bool:
    """True when the route (or one of its dependencies) runs MONAI Label's RBAC or token check."""
    from monailabel.endpoints.user.auth import RBAC, get_current_user

    for dep in dependant.dependencies:
        if isinstance(dep.call, RBAC) or dep.call is get_current_user or _has_auth(dep):
            return True
    return False


def _rbac_of(route: APIRoute):
    from monailabel.endpoints.user.auth import RBAC

    return next((d.call for d in route.dependant.dependencies if isinstance(d.call, RBAC)), None)


async def _login(form_data: OAuth2PasswordRequestForm = Depends()) -> dict[str, Any]:  # noqa: B008 - FastAPI style
    """``POST /auth/token``: MONAI Label's password-grant proxy to the realm, with 401/503 instead of 500."""
    from monailabel.endpoints.user.auth import token_uri

    try:
        url = token_uri()
        if not url:
            raise ValueError("the realm's OpenID configuration has no token_endpoint")
        response = requests.post(
            url,
            data={
                "client_id": settings.MONAI_LABEL_AUTH_CLIENT_ID,
                "username": form_data.username,
                "password": form_data.password,
                "grant_type": "password",
            },
            timeout=settings.MONAI_LABEL_AUTH_TIMEOUT,
        )
    except (requests.RequestException, ValueError, AttributeError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the login realm cannot be reached ({exc})") from exc
    if response.status_code in (400, 401, 403):
        try:
            reason = response.json().get("error_description") or response.json().get("error")
        except ValueError:
            reason = None
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"login refused by the realm: {reason or 'invalid username or password'}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if response.status_code != 200:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the login realm answered {response.status_code}")
    return response.json()


def _open_paths() -> set[tuple[str, str]]:
    return {(m, _prefixed(p)) for m, p in OPEN_ROUTES}


def _secure_routes(app) -> list[str]:
    """Apply the route changes listed in the module docstring; return what changed (for the log)."""
    from monailabel.endpoints.user.auth import RBAC

    admin = settings.MONAI_LABEL_AUTH_ROLE_ADMIN
    changes = []

    info = find_route(app, "GET", _prefixed("/info/"))
    rbac = _rbac_of(info) if info is not None else None
    if rbac is not None and rbac not in app.dependency_overrides:
        app.dependency_overrides[rbac] = _open
        changes.append("GET /info/ open")

    for method in ("PUT", "DELETE"):
        route = find_route(app, method, _prefixed("/model/{model}"))
        rbac = _rbac_of(route) if route is not None else None
        if rbac is not None and rbac not in app.dependency_overrides and rbac.roles != admin:
            app.dependency_overrides[rbac] = RBAC(admin)
            changes.append(f"{method} /model/{{model}} needs {admin} (was {rbac.roles})")

    login = find_route(app, "POST", _prefixed("/auth/token"))
    if login is not None and not getattr(login, "usseg_auth", False):
        shadow_route(app, _prefixed("/auth/token"), _login, {"POST"}, name="usseg_login")
        changes.append("POST /auth/token answers 401/503 instead of 500")

    open_paths = _open_paths()
    answered: set[tuple[str, str]] = set()  # (method, path) already served by an earlier route
    for path, methods, route in list(api_routes(app)):
        todo = {m for m in methods if (m, path) not in answered and (m, path) not in open_paths}
        answered.update((m, path) for m in methods)
        if not todo or _has_auth(route.dependant):
            continue
        shadow_route(app, path, route.endpoint, todo, [*route.dependencies, Depends(RBAC(admin))], name=route.name)
        changes.append(f"{','.join(sorted(todo))} {path} needs {admin} (had no check)")
    return changes


async def _open() -> None:
    """Dependency standing in for the role check of an open route."""
    return None


def route_roles(app) -> dict[tuple[str, str], str | None]:
    """``{(method, path): role}`` as enforced now: the role, ``"*"`` for any valid token, None when open.

    Only the route that answers a method and path counts (the first in matching order). Used by the tests and
    handy when auditing a deployment.
    """
    from monailabel.endpoints.user.auth import RBAC

    def role_of(dependant) -> str | None:
        for dep in dependant.dependencies:
            call = app.dependency_overrides.get(dep.call, dep.call)
            if call is _open:
                return None
            if isinstance(call, RBAC):
                return call.roles if isinstance(call.roles, str) else ",".join(call.roles)
            found = role_of(dep)
            if found:
                return found
        return "*" if _has_auth(dependant) else None

    roles: dict[tuple[str, str], str | None] = {}
    for path, methods, route in api_routes(app):
        for method in methods:
            roles.setdefault((method, path), role_of(route.dependant))
    return roles


def install_auth(app=None) -> list[str]:
    """Patch token verification and secure the routes when ``MONAI_LABEL_AUTH_ENABLE`` is true (idempotent).

    Args:
        app: the FastAPI application; default: MONAI Label's ``monailabel.app.app`` when that module is loaded
            (only in the server process; training and scoring child processes import no web app and are left
            alone).

    Returns:
        A list of the changes made (empty when auth is off or everything was already in place).
    """
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return []
    _patch_verification()
    if app is None:
        module = sys.modules.get("monailabel.app")
        app = getattr(module, "app", None)
    if app is None:
        return []
    changes = _secure_routes(app)
    if changes:
        logger.info(
            "auth on (realm %s, algorithms %s): %s",
            settings.MONAI_LABEL_AUTH_REALM_URI, accepted_algorithms(), "; ".join(changes),
        )
    return changes
