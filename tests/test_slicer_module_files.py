"""The USSegClip module's files, checked without 3D Slicer (CI has none).

- the ``.ui`` file loads with PySide6's ``QUiLoader`` offscreen and holds every widget the module's code uses,
  and every ``SlicerParameterName`` is a field of the parameter node;
- ``USSegClip.py``, the in-Slicer test and the Logic package compile; they do no HTTP themselves (only
  ``USSegClipLib`` does), import from Lib and Logic only names those export, and call only Logic methods that exist;
- ``USSegClipLib`` never imports ``slicer``, ``qt``, ``ctk`` or ``vtk`` (checked in the source and at run time);
- the Logic package imports only ``slicer``, ``vtk``, numpy, ``USSegClipLib`` and the standard library: no Qt, no
  ``slicer.modules``/``slicer.app``, no ``ScriptedLoadableModule`` (it runs on slicer-core: test_slicer_mrml*.py);
- the CMake files follow the extension template and list every file that must be installed.

No stand-in ``slicer`` module is used: the module file is analysed, not imported.
"""

from __future__ import annotations

import ast
import json
import os
import py_compile
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[1] / "slicer_extension"
MODULE_DIR = EXT / "USSegClip"
MODULE_PY = MODULE_DIR / "USSegClip.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "USSegClip.ui"
LIB_DIR = MODULE_DIR / "USSegClipLib"
LOGIC_DIR = MODULE_DIR / "USSegClipLogic"
LOGIC_PY = LOGIC_DIR / "logic.py"
SLICER_TEST = MODULE_DIR / "Testing" / "Python" / "USSegClipModuleTest.py"
GUI_MODULES = {"slicer", "qt", "ctk", "vtk"}
HTTP_MODULES = {"requests", "urllib", "urllib3", "http", "httpx", "aiohttp", "socket", "requests_toolbelt"}

_UI_SCRIPT = r"""
import json, sys
from PySide6.QtCore import QFile, QObject
from PySide6.QtUiTools import QUiLoader
from PySide6.QtWidgets import QApplication
app = QApplication([])
f = QFile(sys.argv[1])
assert f.open(QFile.ReadOnly), "cannot open ui file"
loader = QUiLoader()
root = loader.load(f)
if root is None:
    print(json.dumps({"error": loader.errorString()}))
    sys.exit(1)
objects = {o.objectName(): type(o).__name__ for o in root.findChildren(QObject) if o.objectName()}
params = {o.objectName(): o.property("SlicerParameterName") for o in root.findChildren(QObject)
          if o.property("SlicerParameterName")}
members = {}
for o in root.findChildren(QObject):
    if o.objectName():
        meta = o.metaObject()
        props = {meta.property(i).name() for i in range(meta.propertyCount())}
        members[o.objectName()] = sorted(props | {m for m in dir(o) if not m.startswith("_")})
print(json.dumps({"root": root.objectName(), "objects": objects, "params": params, "members": members}))
"""

# Slicer's ctk/qMRML widgets load as plain QWidget here; what the module uses of them beyond QWidget
# (from the CTK / Slicer API documentation).
CTK_MEMBERS = {
    "ctkSliderWidget": {"value", "minimum", "maximum", "singleStep", "decimals"},
    "qMRMLNodeComboBox": {"currentNode", "setCurrentNode", "setMRMLScene"},
}
PYTHONQT_MEMBERS = {"connect"}  # PythonQt's signal connection by signature string


@pytest.fixture(scope="module")
def loaded_ui():
    pytest.importorskip("PySide6.QtUiTools")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", _UI_SCRIPT, str(UI_FILE)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _ui_names_used(tree: ast.Module) -> set[str]:
    """Every ``self.ui.<name>`` in the module."""
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            names.add(node.attr)
    return names


def _imported_modules(tree: ast.Module) -> set[str]:
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def test_ui_loads_offscreen_with_every_widget_the_code_uses(loaded_ui):
    assert loaded_ui["root"] == "USSegClip"
    used = _ui_names_used(_tree(MODULE_PY))
    assert len(used) >= 20, used  # the parser found the references
    missing = sorted(used - set(loaded_ui["objects"]))
    assert not missing, f"USSegClip.py uses widgets the .ui lacks: {missing}"


def _ui_members_used(tree: ast.Module) -> dict[str, set[str]]:
    """``self.ui.<widget>.<member>`` uses, per widget."""
    used: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Attribute) and node.value.value.attr == "ui"):
            used.setdefault(node.value.attr, set()).add(node.attr)
    return used


def test_code_uses_only_members_the_widgets_have(loaded_ui):
    """Catches typos such as ``self.ui.serverUrlLineEdit.txt`` or a property of the wrong widget class."""
    declared = {m.group(1): m.group(2) for m in re.finditer(r'<widget class="(\w+)" name="(\w+)"', UI_FILE.read_text())}
    declared = {name: cls for cls, name in declared.items()}
    used = _ui_members_used(_tree(MODULE_PY))
    assert used, "the parser found no widget member uses"
    wrong = {}
    for widget, members in used.items():
        known = set(loaded_ui["members"][widget]) | PYTHONQT_MEMBERS | CTK_MEMBERS.get(declared.get(widget, ""), set())
        if members - known:
            wrong[widget] = sorted(members - known)
    assert not wrong, f"members the widgets do not have: {wrong}"


def test_ui_parameter_names_are_parameter_node_fields(loaded_ui):
    fields = {n.target.id for n in _class(_tree(MODULE_PY), "USSegClipParameterNode").body
              if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert loaded_ui["params"], "no widget is bound to the parameter node"
    unknown = {w: p for w, p in loaded_ui["params"].items() if p not in fields}
    assert not unknown, f"SlicerParameterName values that are not parameter node fields: {unknown}"
    assert set(loaded_ui["params"].values()) == fields  # every field has its widget


@pytest.mark.parametrize("path", [MODULE_PY, SLICER_TEST, *sorted(LOGIC_DIR.glob("*.py"))], ids=lambda p: p.name)
def test_module_files_compile_and_do_no_http(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)
    tree = _tree(path)
    http = _imported_modules(tree) & HTTP_MODULES
    assert not http, f"{path.name} imports {http}: server work belongs in USSegClipLib"
    source = path.read_text()
    assert not re.search(r"\b(requests|urllib3?|http\.client)\.", source), f"HTTP call in {path.name}"


def _declared_all(path: Path) -> set[str]:
    for node in _tree(path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{path} declares no __all__")


def test_module_imports_only_what_lib_and_logic_export():
    sys.path.insert(0, str(MODULE_DIR))
    try:
        import USSegClipLib
    finally:
        sys.path.remove(str(MODULE_DIR))
    exported = {"USSegClipLib": set(USSegClipLib.__all__), "USSegClipLogic": _declared_all(LOGIC_DIR / "__init__.py")}
    used = 0
    for path in (MODULE_PY, SLICER_TEST, *LOGIC_DIR.glob("*.py")):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module in exported:
                for alias in node.names:
                    used += 1
                    assert alias.name in exported[node.module], f"{path.name} imports {alias.name!r} from {node.module}"
    assert used >= 10


ALLOWED_LOGIC_IMPORTS = {"slicer", "vtk", "numpy", "USSegClipLib",  # and the standard library:
                         "__future__", "collections", "json", "logging", "os", "re", "tempfile", "threading", "typing"}


def test_logic_package_needs_no_qt():
    """Only slicer (MRML, util, logic classes), vtk, numpy, Lib and the standard library; no GUI entry points."""
    files = sorted(LOGIC_DIR.glob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "logic.py", "mrml.py"}
    for path in files:
        tree = _tree(path)
        extra = _imported_modules(tree) - ALLOWED_LOGIC_IMPORTS
        assert not extra, f"{path.name} imports {sorted(extra)}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "slicer":
                assert node.attr not in {"modules", "app", "ScriptedLoadableModule", "mrmlScene"}, (
                    f"{path.name} uses slicer.{node.attr} (absent from slicer-core)")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slicer."):
                assert node.module not in {"slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper"}, path.name


def test_widget_calls_only_existing_logic_methods():
    tree = _tree(MODULE_PY)
    logic_methods = {n.name for n in _class(_tree(LOGIC_PY), "USSegClipLogic").body if isinstance(n, ast.FunctionDef)}
    called = set()
    for node in ast.walk(_class(tree, "USSegClipWidget")):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "logic"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            called.add(node.attr)
    assert called, "no self.logic.* use found"
    unknown = called - logic_methods - {"client", "info", "monitors", "sequencesLogic", "scene"}
    assert not unknown, f"the widget uses Logic members that do not exist: {unknown}"


def test_lib_never_imports_slicer_qt_ctk_vtk():
    files = sorted(LIB_DIR.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        gui = _imported_modules(_tree(path)) & GUI_MODULES
        assert not gui, f"{path.name} imports {gui}"
    code = (
        f"import sys; sys.path.insert(0, {str(MODULE_DIR)!r}); import USSegClipLib; "
        "import USSegClipLib.client, USSegClipLib.segfile, USSegClipLib.inference; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('slicer', 'qt', 'ctk', 'vtk')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_cmake_files_follow_the_template_and_list_every_file():
    top = (EXT / "CMakeLists.txt").read_text()
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                  "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({field}\s", top), field
    assert "find_package(Slicer REQUIRED)" in top and "add_subdirectory(USSegClip)" in top
    assert "Slicer_EXTENSION_GENERATE_CONFIG" in top and "Slicer_EXTENSION_CPACK" in top

    module = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "set(MODULE_NAME USSegClip)" in module and "slicerMacroBuildScriptedModule(" in module
    entries = re.findall(r"^\s+(\S+\.(?:py|png|ui))\s*$", module, re.M)
    listed = {m.replace("${MODULE_NAME}", "USSegClip") for m in entries}
    for name in listed:
        assert (MODULE_DIR / name).is_file(), f"CMakeLists lists {name}, which does not exist"
    lib_files = {f"{p.parent.name}/{p.name}" for d in (LIB_DIR, LOGIC_DIR) for p in d.glob("*.py")}
    assert lib_files <= listed, f"not installed by CMake: {sorted(lib_files - listed)}"
    assert {"USSegClip.py", "Resources/UI/USSegClip.ui", "Resources/Icons/USSegClip.png"} <= listed
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module

    testing = (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").read_text()
    script = re.search(r"slicer_add_python_unittest\(SCRIPT (\S+)\)", testing).group(1)
    assert (SLICER_TEST.parent / script.replace("${MODULE_NAME}", "USSegClip")).is_file()
    assert "add_subdirectory(Python)" in (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text()


def test_module_and_in_slicer_tests_follow_the_scripted_template():
    tree = _tree(MODULE_PY)
    bases = {n.name: [ast.unparse(b) for b in n.bases] for n in tree.body if isinstance(n, ast.ClassDef)}
    assert bases["USSegClip"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in bases["USSegClipWidget"]
    assert "USSegClipLogic" not in bases  # the Logic lives in USSegClipLogic/ (no Qt base class)
    assert [ast.unparse(b) for b in _class(_tree(LOGIC_PY), "USSegClipLogic").bases] == []
    assert bases["USSegClipTest"] == ["ScriptedLoadableModuleTest"]
    test_classes = [n for n in _tree(SLICER_TEST).body if isinstance(n, ast.ClassDef)]
    assert [ast.unparse(b) for b in test_classes[0].bases] == ["ScriptedLoadableModuleTest"]
    for cls in (_class(tree, "USSegClipTest"), test_classes[0]):
        methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
        assert "runTest" in methods and any(m.startswith("test_") for m in methods)


def test_icon_is_a_png():
    Image = pytest.importorskip("PIL.Image")
    with Image.open(MODULE_DIR / "Resources" / "Icons" / "USSegClip.png") as im:
        assert im.format == "PNG" and im.size[0] == im.size[1] >= 64
