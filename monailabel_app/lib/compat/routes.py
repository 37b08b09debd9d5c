"""Find and replace MONAI Label's HTTP routes from the app: lookup, shadowing, and handlers moved to threads.

MONAI Label 0.8.5 declares its routes ``async def`` but does all their work synchronously (``POST /infer/{model}``
decodes, runs the network and writes the label inside the coroutine). While one inference or refinement runs,
the event loop is blocked: every other request — ``GET /info/``, a second user's inference, a training status
poll — waits in the socket queue, without bound. :func:`run_in_threads` puts a route in front of the original
(same path, method, parameters and dependencies, so RBAC still applies) whose coroutine hands the original
synchronous function to Starlette's thread pool: requests are served concurrently and the app's own admission
control (refinement's 429) answers at once.

FastAPI >= 0.16x keeps the routes of included routers as nested objects (``iter_route_contexts`` flattens them)
and builds their handlers from the original endpoint, so routes are never patched in place: a new route is
inserted at the front of the app's list (:func:`shadow_route`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

__all__ = ["api_routes", "find_route", "shadow_route", "run_in_threads"]

logger = logging.getLogger(__name__)


def api_routes(app: Any) -> Iterator[tuple[str, set[str], APIRoute]]:
    """``(path, methods, APIRoute)`` for every API route in matching order, routes of included routers too."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are copied into the app's list
        iter_route_contexts = None
    if iter_route_contexts is None:
        for route in app.router.routes:
            if isinstance(route, APIRoute):
                yield route.path, set(route.methods), route
        return
    for context in iter_route_contexts(app.router.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            yield context.path, set(context.methods or ()), route


def find_route(app: Any, method: str, path: str) -> APIRoute | None:
    """The route that answers ``method path`` (the first in matching order)."""
    return next((r for p, methods, r in api_routes(app) if p == path and method in methods), None)


def shadow_route(app: Any, path: str, endpoint: Callable[..., Any], methods: set[str], dependencies=(),
                 name: str | None = None, marker: str = "usseg_auth") -> APIRoute:
    """Add a route in front of all others, so it answers ``methods path`` instead of the existing one."""
    app.router.add_api_route(
        path, endpoint, methods=sorted(methods), dependencies=list(dependencies), include_in_schema=False,
        name=name,
    )
    route = app.router.routes.pop()
    setattr(route, marker, True)
    app.router.routes.insert(0, route)
    mark_changed = getattr(app.router, "_mark_routes_changed", None)
    if mark_changed is not None:  # FastAPI >= 0.16x caches route lists by version
        mark_changed()
    return route


def _threaded(original: Callable[..., Any], sync_fn: Callable[..., Any], drop: tuple[str, ...]):
    @functools.wraps(original)  # FastAPI reads the original signature (parameters, RBAC dependency)
    async def call(**values: Any) -> Any:
        for key in drop:
            values.pop(key, None)
        return await run_in_threadpool(sync_fn, **values)

    return call


def run_in_threads(app: Any, routes: dict[tuple[str, str], Callable[..., Any]],
                   drop: tuple[str, ...] = ("user",)) -> list[str]:
    """Answer the given routes by ``sync_fn(**parameters)`` in the thread pool.

    Args:
        app: the FastAPI application (``monailabel.app.app``).
        routes: ``{(method, path): sync_fn}``, e.g. ``{("POST", "/infer/{model}"): infer.run_inference}``;
            ``sync_fn`` takes the route's parameters by name.
        drop: route parameters that ``sync_fn`` does not take (MONAI Label's RBAC ``user`` dependency).

    Returns:
        the ``"METHOD path"`` entries replaced (a route not found is logged, not an error).
    """
    patched = []
    for (method, path), fn in routes.items():
        original = find_route(app, method, path)
        if original is None:
            logger.warning("route %s %s not found, left on the event loop", method, path)
            continue
        if getattr(original, "usseg_threaded", False):
            patched.append(f"{method} {path}")
            continue
        shadow_route(app, path, _threaded(original.endpoint, fn, drop), {method}, original.dependencies,
                     name=original.name, marker="usseg_threaded")
        patched.append(f"{method} {path}")
    return patched
