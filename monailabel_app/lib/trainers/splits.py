"""A fixed train/validation assignment per datastore, so every retrain is scored on the same held-out studies.

MONAI Label reshuffles train/validation on every retrain (MONAILabel #1752), which inflates validation Dice and
makes two retrains incomparable. Here each labelled study is assigned **once**:

- rule: ``h = sha256("<model>/<study id>")`` read as a number in [0, 1); the study goes to validation when
  ``h < val_split``. The rule depends only on the model name and the study id, so new labels join
  deterministically and the same datastore always gets the same split;
- the assignment is persisted in ``.usseg_splits.json`` beside the datastore index (atomic write) and never
  changed afterwards, even if ``val_split`` changes later (it applies to new studies only);
- with two or more labelled studies and none in validation, the study with the smallest ``h`` is moved to
  validation (persisted), so a comparison is always possible; a single study trains alone (no validation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["SPLITS_FILE", "split_hash", "FixedSplit"]

logger = logging.getLogger(__name__)

SPLITS_FILE = ".usseg_splits.json"


def split_hash(model: str, study_id: str) -> float:
    """The study's position in [0, 1) for ``model`` (first 8 bytes of SHA-256 of ``"model/study"``)."""
    digest = hashlib.sha256(f"{model}/{study_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class FixedSplit:
    """Persisted ``{model: {study id: "train"|"val"}}`` assignments (see the module docstring).

    Args:
        path: the JSON file (``<datastore state dir>/.usseg_splits.json``).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("%s is unreadable (%s); assignments are recomputed by the hash rule", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def assign(self, model: str, study_ids: Sequence[str], val_split: float) -> tuple[list[str], list[str]]:
        """Return ``(train ids, validation ids)`` for the labelled ``study_ids``, assigning new ones and saving.

        Studies assigned earlier keep their side; ids no longer labelled are kept in the file (they may return).
        """
        data = self._read()
        table = {k: v for k, v in (data.get(model) or {}).items() if v in ("train", "val")}
        changed = False
        for sid in study_ids:
            if sid not in table:
                table[sid] = "val" if split_hash(model, sid) < float(val_split) else "train"
                changed = True
        current = list(dict.fromkeys(study_ids))
        val = [s for s in current if table[s] == "val"]
        if len(current) >= 2 and not val and float(val_split) > 0:
            first = min(current, key=lambda s: split_hash(model, s))
            table[first] = "val"
            changed = True
        if len(current) >= 2 and all(table[s] == "val" for s in current):
            last = max(current, key=lambda s: split_hash(model, s))
            table[last] = "train"
            changed = True
        if changed:
            data[model] = table
            self._write(data)
        train = [s for s in current if table[s] == "train"]
        val = [s for s in current if table[s] == "val"]
        return train, val
