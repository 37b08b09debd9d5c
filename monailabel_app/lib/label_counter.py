"""Persistent per-model count of newly saved labels, for auto-retraining across server restarts.

The counts live in a small JSON file, ``.usseg_new_labels.json``, in the datastore's own folder: the studies
folder for a local datastore, the cache folder for a DICOMweb datastore (the folder that holds
``datastore_v2.json`` and the saved labels). That place was chosen over the app's ``model/`` folder because

* it survives a restart exactly as the labels it counts do (same folder, same lifetime: wiping or moving the
  studies folder takes its pending count with it);
* it is per datastore: one app folder served on two studies folders keeps two separate counts, so labels saved
  on one datastore never start training on the other;
* it is already writable, because the server writes labels and the datastore index there.

The file is ``{"new_labels": {"<model>": <count>, ...}}``. It is written atomically (temporary file in the same
folder + ``os.replace``), so a crash mid-write leaves the previous count. A missing file means zero; an
unreadable or malformed file (or entry) is logged as a warning and counted from zero, never an error. Counts of
models that the current server does not load are kept when the file is rewritten.

The class is not thread-safe by itself: callers serialise :meth:`increment` and :meth:`reset` with their own lock
(the app's label lock).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable

__all__ = ["COUNTER_FILE", "NewLabelCounter"]

logger = logging.getLogger(__name__)

COUNTER_FILE = ".usseg_new_labels.json"


class NewLabelCounter:
    """Count of newly saved labels per model, mirrored to a JSON file (see the module docstring).

    Args:
        path: the JSON file (created on the first change; its folder must exist).
        models: the models counted by this server; each starts at its stored count, or zero.
    """

    def __init__(self, path: str | os.PathLike, models: Iterable[str]) -> None:
        self.path = os.fspath(path)
        self._counts: dict[str, int] = self._load()
        for model in models:
            self._counts.setdefault(model, 0)

    def __getitem__(self, model: str) -> int:
        return self._counts[model]

    def counts(self) -> dict[str, int]:
        """A copy of all counts (including models this server does not load)."""
        return dict(self._counts)

    def increment(self, model: str) -> int:
        """Add one new label for ``model``, store the counts and return the new count."""
        self._counts[model] = self._counts.get(model, 0) + 1
        self._store()
        return self._counts[model]

    def reset(self, model: str) -> None:
        """Set the count of ``model`` back to zero (a training of it started) and store the counts."""
        self._counts[model] = 0
        self._store()

    # ---- file ----------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, int]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8 or not JSON
            logger.warning("new-label counts in %s are unreadable (%s); counting from zero", self.path, exc)
            return {}
        stored = data.get("new_labels") if isinstance(data, dict) else None
        if not isinstance(stored, dict):
            logger.warning("new-label counts in %s have no 'new_labels' mapping; counting from zero", self.path)
            return {}
        counts = {}
        for model, count in stored.items():
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                counts[str(model)] = count
            else:
                logger.warning("new-label count %r of %s in %s is invalid; counting from zero", count, model, self.path)
        return counts

    def _store(self) -> None:
        """Write the counts atomically; a failed write is logged (the count stays in memory), never raised."""
        text = json.dumps({"new_labels": self._counts}, indent=2, sort_keys=True)
        folder = os.path.dirname(self.path) or "."
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("cannot store new-label counts in %s (%s); they are kept in memory only", self.path, exc)
            if tmp and os.path.exists(tmp):
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
