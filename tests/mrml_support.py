"""Import Slicer's core libraries (the ``slicer-core`` wheel) for the Logic tests, or skip the calling module; the
``scene`` fixture (loaded through ``conftest.pytest_plugins``).

Call :func:`require_slicer_core` at module level before importing ``USSegClipLogic``: it skips the module with the
reason when ``slicer-core`` is missing (or another ``slicer`` package is installed) and puts the module folder on
``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"


def require_slicer_core():
    """The ``slicer`` module of ``slicer-core`` (skips the calling test module without it)."""
    slicer = pytest.importorskip(
        "slicer", reason="slicer-core is not installed (pip install slicer-core==5.13.31053.0): no MRML to test on"
    )
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the installed 'slicer' package is not slicer-core (no vtkMRMLScene)", allow_module_level=True)
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    return slicer


@pytest.fixture
def scene():
    """A fresh MRML scene with Slicer's Sequences logic: ``(scene, sequences_logic)``; cleared afterwards."""
    slicer = require_slicer_core()
    scene = slicer.vtkMRMLScene()
    sequences = slicer.vtkSlicerSequencesLogic()
    sequences.SetMRMLScene(scene)
    yield scene, sequences
    sequences.SetMRMLScene(None)
    scene.Clear(1)
