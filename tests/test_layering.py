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


IO = LIBRARY / "io"


def _io_imports(path: Path) -> tuple[set[str], list[str]]:
    """``usseg_models.io`` modules a module imports (module level or inside functions), and private names it takes
    from them."""
    modules, private = set(), []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("usseg_models.io."):
                modules.add(node.module.split(".")[2])
                private += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            elif node.module == "usseg_models.io":
                modules.update(a.name for a in node.names if (IO / f"{a.name}.py").is_file())
        elif isinstance(node, ast.Import):
            modules.update(a.name.split(".")[2] for a in node.names if a.name.startswith("usseg_models.io."))
    return modules, private


def test_io_has_no_import_circle_and_no_private_names_cross_modules():
    graph, private = {}, {}
    for path in IO.glob("*.py"):
        if path.name == "__init__.py":
            continue
        deps, taken = _io_imports(path)
        graph[path.stem] = deps - {path.stem}
        if taken:
            private[path.stem] = taken
    assert private == {}

    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            assert state.get(dep) != 1, "import circle: " + " -> ".join([*trail, node, dep])
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_every_format_is_known_in_one_place():
    """The registry's endings are what the MONAI readers, the server's datastore and predict's discovery use."""
    from usseg_models.inference.files import _FRAME_EXTS
    from usseg_models.io.formats import DATASTORE_PATTERNS, FORMATS, SUFFIXES, suffixes_of
    from usseg_models.io.loaders import RegistryReader
    from usseg_models.serving.launcher import DATASTORE_FILE_EXT

    assert RegistryReader()._suffixes() == SUFFIXES
    assert DATASTORE_FILE_EXT == list(DATASTORE_PATTERNS)
    assert _FRAME_EXTS == suffixes_of("image") == tuple(s for n in ("png", "jpeg", "gif", "bmp", "tiff")
                                                        for s in FORMATS[n].suffixes)
    from usseg_models.data.records import IMAGE_EXTS, VIDEO_EXTS, VOLUME_EXTS

    assert (IMAGE_EXTS, VIDEO_EXTS) == (suffixes_of("image"), suffixes_of("cine"))
    assert set(IMAGE_EXTS + VIDEO_EXTS + VOLUME_EXTS) == set(SUFFIXES)
