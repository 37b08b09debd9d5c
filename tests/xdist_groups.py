"""Parallel test runs (pytest-xdist): the modules that share a server or a trained model run in one worker.

``scripts/test`` runs ``pytest -n 2 --dist loadgroup``. xdist 3.8's own ``loadgroup`` reads ``xdist_group`` marks
into the test ids through ``Item._nodeid``, which pytest 9.2 no longer reads (the id lives in ``Item._id``), so
marks would be ignored and each worker would build its own copy of the session's bootstrapped server (two minutes
of CPU). Here, instead:

- each worker, after collecting, maps every test module to a group: one group per module (a module-scoped server
  is built once), modules that use the same expensive session fixture (:data:`EXPENSIVE_SESSION_FIXTURES`, found
  through pytest's own fixture resolution, so a new test using one is grouped without a list to update) merged
  into one group; it writes the map to a file the controller named (``workerinput``);
- the controller's scheduler (:class:`GroupScheduling`, xdist's ``loadscope`` scheduling with that map as the scope)
  hands out whole groups, in the workers' collection order, which :func:`heavy_first` made heaviest group first.

Registered in ``tests/conftest.py`` (``pytest_plugins``); without ``-n`` nothing here runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

# Session fixtures that start a server or train a model.
EXPENSIVE_SESSION_FIXTURES = ("server", "auth_server", "bootstrapped", "refine_base_model")
_INPUT_KEY = "usseg_xdist_groups"


def _module(item) -> str:
    return item.nodeid.split("::", 1)[0]


def _shared_fixtures(item) -> list[str]:
    """The :data:`EXPENSIVE_SESSION_FIXTURES` ``item`` uses (as resolved by pytest: session-scoped ones only)."""
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return [name for name in EXPENSIVE_SESSION_FIXTURES if name in defs and defs[name][-1].scope == "session"]


def module_groups(items) -> dict[str, str]:
    """Module path -> group name (the first module of the group): modules sharing an expensive session fixture
    are merged (union-find)."""
    parent: dict[str, str] = {}

    def find(m: str) -> str:
        while parent.setdefault(m, m) != m:
            m = parent[m]
        return m

    owner: dict[str, str] = {}
    for item in items:
        module = _module(item)
        find(module)
        for name in _shared_fixtures(item):
            parent[find(module)] = find(owner.setdefault(name, module))
    return {m: find(m) for m in parent}


def _grouping(config) -> bool:
    return config.pluginmanager.hasplugin("xdist") and config.getvalue("dist") == "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Controller: tell each worker where to write the module groups."""
    config = node.config
    if not _grouping(config):
        return
    if not hasattr(config, "_usseg_groups_file"):
        config._usseg_groups_file = os.path.join(tempfile.mkdtemp(prefix="usseg-xdist-"), "groups.json")
    node.workerinput[_INPUT_KEY] = config._usseg_groups_file


def heavy_first(items, groups: dict[str, str]) -> list:
    """``items`` with the groups likely to take longest first (a long group started last would finish alone):
    groups sharing an expensive session fixture, then groups with ``slow`` tests, then by number of tests; the
    collection order is kept inside a group and between equals."""
    stats: dict[str, list[int]] = {}
    for item in items:
        s = stats.setdefault(groups[_module(item)], [0, 0, 0])
        s[0] = max(s[0], len(_shared_fixtures(item)))
        s[1] += item.get_closest_marker("slow") is not None
        s[2] += 1
    rank = {g: i for i, g in enumerate(sorted(stats, key=lambda g: (-stats[g][0], -bool(stats[g][1]), -stats[g][2])))}
    return sorted(items, key=lambda item: rank[groups[_module(item)]])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Worker: order the tests heaviest group first and write the module groups (every worker collects the same
    tests, in the same order, and writes the same map)."""
    path = getattr(config, "workerinput", {}).get(_INPUT_KEY)
    if not path:
        return
    groups = module_groups(items)
    items[:] = heavy_first(items, groups)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    with os.fdopen(fd, "w") as f:
        json.dump(groups, f)
    os.replace(tmp, path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Controller: whole groups to one worker (only for ``--dist loadgroup``)."""
    if not _grouping(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """``loadscope`` with the workers' module groups as the scope (read once all workers collected)."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if self.groups is None:
                path = getattr(config, "_usseg_groups_file", None)
                self.groups = json.loads(Path(path).read_text()) if path and os.path.exists(path) else {}
            return self.groups.get(module, module)

    config.option.loadscopereorder = False  # the workers' collection order is already heaviest group first
    return GroupScheduling(config, log)


def pytest_unconfigure(config):
    path = getattr(config, "_usseg_groups_file", None)
    if path:
        import shutil

        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
