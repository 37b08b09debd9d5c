"""Where infer tasks write the result files they answer with: a folder of the server's own, never the temp root.

Why: MONAI Label's ``POST /infer/{model}`` sends the result file under its base name and removes the file in a
background task after answering (``send_response`` in ``monailabel/endpoints/infer.py``). MONAI Label's own client
(``monailabel.client.MONAILabelClient.infer``) saves the answer as ``<its temp folder>/<that name>``, by default
the system temp folder. Results written with ``tempfile.mkstemp`` in the system temp folder were therefore, for a
client on the server's machine (a workstation running Slicer and the server), the same path as the client's saved
answer: when the client saved before the server's clean-up ran, the clean-up removed the client's answer
(``FileNotFoundError`` when the client read it). A folder that only the server writes in can never be where the
client saves.

The folder is ``<model dir>/.results/``. MONAI Label still removes each result after its answer (batch inference
too); a file older than :data:`STALE_AFTER_S` can only be left by a server stopped between writing a result and
answering, and goes the first time a server process uses the folder. (Not under ``model/.work``, which holds the
training runs' folders and is expected empty when no training runs.) Uploaded *inputs* stay where MONAI Label puts
them (the system temp folder), which is what ``main.py`` and ``infers/refine.py`` check uploaded paths against.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["RESULTS_DIR", "STALE_AFTER_S", "results_dir", "new_result_file"]

RESULTS_DIR = ".results"
#: a result lives from the end of its inference to the end of its answer: seconds, not an hour
STALE_AFTER_S = 3600.0

_lock = threading.Lock()
_swept: set[Path] = set()


def results_dir(model_dir: str | os.PathLike) -> Path:
    """The folder for result files under the app's ``model_dir`` (created when missing)."""
    folder = Path(model_dir) / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with _lock:
        if folder not in _swept:  # once per process
            _swept.add(folder)
            _remove_stale(folder)
    return folder


def new_result_file(model_dir: str | os.PathLike, suffix: str) -> str:
    """Path of a new empty file with a unique ``usseg_*<suffix>`` name in :func:`results_dir`."""
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="usseg_", dir=results_dir(model_dir))
    os.close(fd)
    return path


def _remove_stale(folder: Path) -> None:
    cutoff = time.time() - STALE_AFTER_S
    for path in folder.iterdir():
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
