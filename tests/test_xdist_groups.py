"""The parallel-run grouping (tests/xdist_groups.py): modules sharing an expensive session fixture share a group."""

from __future__ import annotations

from types import SimpleNamespace

from xdist_groups import module_groups


def _item(nodeid: str, **fixtures: str):
    defs = {name: [SimpleNamespace(scope=scope)] for name, scope in fixtures.items()}
    return SimpleNamespace(nodeid=nodeid, _fixtureinfo=SimpleNamespace(name2fixturedefs=defs))


def test_modules_sharing_a_session_server_or_model_are_one_group_others_their_own():
    items = [
        _item("tests/test_a.py::t1", bootstrapped="session"),
        _item("tests/test_b.py::t1"),
        _item("tests/test_c.py::t1", server="module"),  # a module's own server: not shared
        _item("tests/test_d.py::t1", bootstrapped="session", refine_base_model="session"),
        _item("tests/test_e.py::t1", refine_base_model="session"),
        _item("tests/test_f.py::t1", server="session"),
        _item("tests/test_g.py::t2", server="session", tmp_path="function"),
    ]
    groups = module_groups(items)
    assert groups["tests/test_a.py"] == groups["tests/test_d.py"] == groups["tests/test_e.py"]
    assert groups["tests/test_f.py"] == groups["tests/test_g.py"] != groups["tests/test_a.py"]
    assert groups["tests/test_b.py"] == "tests/test_b.py" and groups["tests/test_c.py"] == "tests/test_c.py"
    assert len(set(groups.values())) == 4


def test_groups_with_shared_fixtures_then_slow_modules_come_first_order_kept_inside():
    from xdist_groups import heavy_first

    slow = SimpleNamespace(name="slow")

    def marked(item, mark=None):
        item.get_closest_marker = lambda name: mark if mark is not None and name == mark.name else None
        return item

    items = [
        *(marked(_item(f"tests/test_a.py::t{k}")) for k in (1, 2, 3)),
        marked(_item("tests/test_b.py::t1"), slow),
        marked(_item("tests/test_c.py::t1", bootstrapped="session")),
        marked(_item("tests/test_d.py::t1")),
        marked(_item("tests/test_e.py::t1", bootstrapped="session")),
    ]
    order = [i.nodeid for i in heavy_first(items, module_groups(items))]
    assert order == ["tests/test_c.py::t1", "tests/test_e.py::t1", "tests/test_b.py::t1", "tests/test_a.py::t1",
                     "tests/test_a.py::t2", "tests/test_a.py::t3", "tests/test_d.py::t1"]
