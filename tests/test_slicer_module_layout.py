"""Layout of the USSegClip Lib and Logic packages: small modules that say what they hold, and the names the
Widget, the tests and scripts import still where they were.

Runs without 3D Slicer: the files are read as text, and only ``USSegClipLib`` (plain Python) is imported.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"
PACKAGE_FILES = sorted([*(MODULE_DIR / "USSegClipLib").glob("*.py"), *(MODULE_DIR / "USSegClipLogic").glob("*.py")])
MAX_LINES = 400

sys.path.insert(0, str(MODULE_DIR))

from USSegClipLib import client as client_module  # noqa: E402
from USSegClipLib.transport import ServerTransport  # noqa: E402


@pytest.mark.parametrize("path", PACKAGE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_package_modules_are_small_and_say_what_they_hold(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by concern"
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring) > 40, f"{path.name} has no module docstring saying what it holds"


def test_client_module_still_exports_its_names():
    assert set(client_module.__all__) == {"InferResult", "MonaiLabelClient"}
    assert issubclass(client_module.MonaiLabelClient, ServerTransport)
    assert client_module.InferResult().label is None


def test_clone_is_a_client_with_its_own_session():
    with client_module.MonaiLabelClient("http://127.0.0.1:9", token="t", timeout=2, infer_timeout=5) as client:
        twin = client.clone()
        assert type(twin) is client_module.MonaiLabelClient
        assert twin.session is not client.session
        assert twin.session.headers["Authorization"] == "Bearer t"
        assert (twin.base_url, twin.timeout, twin.infer_timeout) == ("http://127.0.0.1:9", 2.0, 5.0)
        twin.close()


def test_logic_class_keeps_its_public_methods():
    """The split moved the work into helper modules; the Logic class still defines every method it had."""
    tree = ast.parse((MODULE_DIR / "USSegClipLogic" / "logic.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "USSegClipLogic")
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert methods >= {
        "parameterNode", "missingPackages", "ensurePackages", "connect", "requireClient", "serverInfo",
        "clipModels", "imageModels", "palette", "labelValues", "ijkToRas", "browserForVolume", "clipFromVolume",
        "clipFromSequence", "numberOfFrames", "currentFrame", "showFrame", "loadVolumeFile", "dicomFile",
        "ensureSegmentation", "writeLabel", "readMasks", "readLabel", "editedFrames", "reviewedFrames",
        "markFrameReviewed", "markAllFramesReviewed", "reviewSummary", "loadNextSample", "uploadClip",
        "segmentClip", "segmentFrame", "submitLabel", "refineClip", "loadLabelFile", "loadSegmentationFile",
        "monitor", "startTraining", "pollTraining", "stopTraining", "_setBaseline",
    }
