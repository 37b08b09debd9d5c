"""Publish a retrained model only when it is better, keep a history, and roll back on request.

After a retrain the job scores the candidate and the live model on the datastore's fixed validation set
(:mod:`monailabel_app.lib.trainers.splits`). The candidate replaces the live model (``model/<name>.pt``) only when
``candidate >= live - tolerance`` (default tolerance 0.01 Dice), when there is no live model, or when the request
says ``force``. Otherwise it is kept as ``model/candidates/<name>.pt`` with both scores and the reason, shown by
``GET /info/`` (``usseg.<name>.candidate``) and in the training result.

Every published model is copied to ``model/history/<name>_v<N>.pt`` and listed in ``model/<name>_history.json``
(version, time, score, live score it replaced, labelled studies, checkpoint). ``POST /train/<name>`` with
``{"rollback": true}`` puts back the previously published version (hot-reloaded like a new model). Publishing is
an atomic file replace, so a ``kill -9`` at any moment leaves a loadable live model.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from monailabel_app.lib.datastore import atomic_copy

__all__ = ["ModelHistory", "should_publish"]

logger = logging.getLogger(__name__)


def should_publish(candidate: float | None, live: float | None, tolerance: float, force: bool,
                   has_live: bool, val_frames: int | None = None, min_val_frames: int = 0) -> tuple[bool, str]:
    """Decide whether a candidate replaces the live model; returns ``(publish, reason)``.

    ``val_frames``: labelled frames (cine frames or images) the two were scored on; fewer than ``min_val_frames``
    is too little to tell two models apart, so a candidate then replaces a live model only with ``force``.
    """
    if force:
        return True, "published because the request said force"
    if not has_live:
        return True, "published: there was no trained model yet"
    if val_frames is not None and candidate is not None and val_frames < min_val_frames:
        return False, (f"not published: the validation set has {val_frames} labelled frame(s), fewer than "
                       f"min_val_frames {min_val_frames}, too few to compare two models (label more studies, or "
                       "retrain with force)")
    if candidate is None or live is None:
        return False, ("not published: no validation set to compare the candidate with the live model "
                       "(label more studies, or retrain with force)")
    if candidate >= live - tolerance:
        return True, f"published: validation Dice {candidate:.4f} >= live {live:.4f} - tolerance {tolerance}"
    return False, f"not published: validation Dice {candidate:.4f} < live {live:.4f} - tolerance {tolerance}"


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ModelHistory:
    """The published versions of one model (see the module docstring).

    Args:
        model_dir: the app's ``model/`` folder.
        name: the model name (``dsanet``, ``intrasense``).
        live_path: the live checkpoint (``model/<name>.pt``).
    """

    def __init__(self, model_dir: str | os.PathLike, name: str, live_path: str | os.PathLike) -> None:
        self.model_dir = Path(model_dir)
        self.name = name
        self.live_path = Path(live_path)
        self.path = self.model_dir / f"{name}_history.json"
        self.versions_dir = self.model_dir / "history"
        self.candidate_path = self.model_dir / "candidates" / f"{name}.pt"
        self.candidate_info = self.model_dir / "candidates" / f"{name}.json"

    def entries(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return data if isinstance(data, list) else []

    def candidate(self) -> dict[str, Any] | None:
        """The last candidate that was not published (scores and reason), or ``None``."""
        try:
            return json.loads(self.candidate_info.read_text())
        except (OSError, ValueError):
            return None

    def _store_version(self, source: Path, record: dict[str, Any]) -> dict[str, Any]:
        entries = self.entries()
        version = max((int(e.get("version", 0)) for e in entries), default=0) + 1
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        kept = self.versions_dir / f"{self.name}_v{version}.pt"
        atomic_copy(str(source), str(kept))
        entry = {"version": version, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "checkpoint": str(kept), **record}
        entries.append(entry)
        _write_json(self.path, entries)
        return entry

    def publish(self, checkpoint: str | os.PathLike, record: dict[str, Any],
                current: str | os.PathLike | None = None) -> dict[str, Any]:
        """Make ``checkpoint`` the live model and record it; returns the history entry.

        ``current`` is the checkpoint in use now (``model/<name>.pt`` or the configured pretrained file; default
        the live path): on the first recorded publish it is kept as version 1 so it can be rolled back to.
        """
        current = Path(current) if current else self.live_path
        if current.is_file() and not self.entries():
            self._store_version(current, {"note": f"model in use before the first recorded publish ({current.name})"})
        entry = self._store_version(Path(checkpoint), record)
        atomic_copy(entry["checkpoint"], str(self.live_path))
        if self.candidate_info.exists():
            self.candidate_info.unlink()
        logger.info("%s: published version %d", self.name, entry["version"])
        return entry

    def keep_candidate(self, checkpoint: str | os.PathLike, record: dict[str, Any]) -> dict[str, Any]:
        """Keep a model that was not published, with its scores and the reason."""
        self.candidate_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(str(checkpoint), str(self.candidate_path))
        info = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "checkpoint": str(self.candidate_path), **record}
        _write_json(self.candidate_info, info)
        return info

    def rollback(self) -> dict[str, Any]:
        """Put back the version published before the live one; returns the new history entry.

        Raises:
            ValueError: fewer than two versions were ever published.
        """
        entries = [e for e in self.entries() if Path(e.get("checkpoint", "")).is_file()]
        live_version = self.live_version()
        older = [e for e in entries if live_version is None or int(e["version"]) < live_version]
        if not older:
            raise ValueError(f"{self.name}: there is no earlier published version to roll back to")
        target = older[-1]
        entry = self._store_version(Path(target["checkpoint"]), {
            "rollback_to": target["version"], "score": target.get("score"),
            "labelled_studies": target.get("labelled_studies"),
        })
        atomic_copy(entry["checkpoint"], str(self.live_path))
        entry["restores"] = target["version"]
        logger.info("%s: rolled back to version %s", self.name, target["version"])
        return entry

    def live_version(self) -> int | None:
        """The version the live file came from (the newest entry whose score it carries), or ``None``."""
        entries = self.entries()
        if not entries:
            return None
        last = entries[-1]
        return int(last.get("rollback_to", last["version"]))
