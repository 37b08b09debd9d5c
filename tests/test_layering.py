"""Import arrows between the project's parts: the library (``usseg_models``) never imports the app."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "usseg_models"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_library_sources_never_import_the_app():
    offenders = {}
    for path in LIBRARY.rglob("*.py"):
        app = sorted(m for m in _imported_modules(path) if m.split(".")[0] == "monailabel_app")
        if app:
            offenders[str(path.relative_to(LIBRARY.parent))] = app
    assert offenders == {}


def test_launcher_and_benches_load_without_the_app():
    code = (
        "import sys, usseg_models.serving.launcher as l, usseg_models.bench.server, usseg_models.bench.loop;"
        "assert (l.APP_DIR / 'main.py').is_file();"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'monailabel_app'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
