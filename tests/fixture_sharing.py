"""One value for a run of test modules: a server that a suite split over several files starts once, not per file.

A module-scoped fixture ends with its module, so each file of a split suite would start its own server. A fixture
written as ``yield from shared_across_modules(request, start)`` and imported (the same function object) into
several modules instead keeps its value while a later collected test still uses it through one of those modules,
and closes it after the last such test, as the one module of the unsplit suite did::

    @pytest.fixture(scope="module")
    def server(request, tmp_path_factory):
        yield from shared_across_modules(request, lambda stack: stack.enter_context(running(...)))

``start(stack)`` makes the value and puts its cleanup on ``stack`` (a :class:`contextlib.ExitStack`). The stack is
also closed when pytest ends, so a run stopped early (``-x``, Ctrl-C) leaves no server behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["shared_across_modules"]

_LIVE: dict[object, tuple[Any, contextlib.ExitStack]] = {}  # fixture function -> (value, its cleanup)


def _used_later(request: pytest.FixtureRequest, fixture: object) -> bool:
    """Whether a test collected after the requesting module's last one uses the same fixture object."""
    name, items = request.fixturename, request.session.items
    own = [i for i, item in enumerate(items) if getattr(item, "module", None) is request.module]
    later = items[max(own) + 1:] if own else []
    return any(
        name in getattr(item, "fixturenames", ()) and getattr(getattr(item, "module", None), name, None) is fixture
        for item in later
    )


def shared_across_modules(request: pytest.FixtureRequest, start: Callable[[contextlib.ExitStack], Any]) -> Iterator:
    """Body of a module-scoped generator fixture: yield the shared value, made by ``start`` when none is live."""
    fixture = getattr(request.module, request.fixturename)
    if fixture not in _LIVE:
        stack = contextlib.ExitStack()
        request.config.add_cleanup(stack.close)  # closing twice is harmless: the first close empties the stack
        try:
            _LIVE[fixture] = (start(stack), stack)
        except BaseException:
            stack.close()
            raise
    value, stack = _LIVE[fixture]
    yield value
    if not _used_later(request, fixture):
        del _LIVE[fixture]
        stack.close()
