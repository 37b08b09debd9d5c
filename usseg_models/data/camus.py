"""The CAMUS data set as shipped (2023 NIfTI release): half sequences (clips) and ED/ES frames (images).

**CAMUS** (``CAMUS_public/database_nifti``): ``patientNNNN/patientNNNN_{2CH,4CH}_half_sequence.nii.gz`` with
``..._half_sequence_gt.nii.gz`` (clips, a label on every frame) and ``patientNNNN_{2CH,4CH}_{ED,ES}.nii.gz`` with
``..._gt.nii.gz`` (images). Labels hold 1 = LV cavity, 2 = myocardium, 3 = left atrium: choose the
structure with ``--label-value`` (default: any non-zero = the whole heart). Subject = patient. The official
split (``database_split/subgroup_{training,validation,testing}.txt``, beside ``database_nifti``) gives
``train``/``val``/``test``; without it there is no split.
"""

from __future__ import annotations

import re
from pathlib import Path

from usseg_models.data.pairing import _ident, sub_folders
from usseg_models.data.records import ClipRecord, ImageRecord, _ext, _stem, subject_of

__all__ = ["camus_clips", "camus_images"]

_CAMUS_PATIENT = re.compile(r"^patient\d+$", re.IGNORECASE)
_CAMUS_SEQUENCE = re.compile(r"^(patient\d+)_(2CH|4CH)_half_sequence$", re.IGNORECASE)
_CAMUS_INSTANT = re.compile(r"^(patient\d+)_(2CH|4CH)_(ED|ES)$", re.IGNORECASE)


def _camus_splits(root: Path) -> dict[str, str]:
    """Patient → ``train``/``val``/``test`` from CAMUS's ``database_split`` files near ``root``."""
    candidates = [root / "database_split", root.parent / "database_split", *root.glob("*/database_split"),
                  *root.glob("*/*/database_split")]
    for folder in candidates:
        if not folder.is_dir():
            continue
        out = {}
        for name, split in (("subgroup_training.txt", "train"), ("subgroup_validation.txt", "val"),
                            ("subgroup_testing.txt", "test")):
            f = folder / name
            if f.is_file():
                for patient in f.read_text(encoding="utf-8-sig").split():
                    out[patient.strip()] = split
        if out:
            return out
    return {}


def _camus_pairs(root: Path, pattern: re.Pattern) -> list[tuple[Path, Path, re.Match]]:
    pairs = []
    for patient in sub_folders(root):
        if not _CAMUS_PATIENT.match(patient.name):
            continue
        for f in sorted(patient.iterdir()):
            if not f.is_file() or _ext(f) not in (".nii.gz", ".nii"):
                continue
            m = pattern.match(_stem(f))
            if not m:
                continue
            gt = next((f.parent / f"{_stem(f)}_gt{e}" for e in (".nii.gz", ".nii")
                       if (f.parent / f"{_stem(f)}_gt{e}").is_file()), None)
            if gt is not None:
                pairs.append((f, gt, m))
    return pairs


def _camus_items(
    root: Path, pattern: re.Pattern, subject_pattern: str | None
) -> list[tuple[str, Path, Path, str, str | None]]:
    """``(id, image, gt, subject, split)`` of each CAMUS file named by ``pattern`` (subject = patient by default)."""
    splits = _camus_splits(root)
    out = []
    for image, gt, m in _camus_pairs(root, pattern):
        patient = m.group(1)
        split = splits.get(patient)
        subject = subject_of(_stem(image), subject_pattern) if subject_pattern else patient
        out.append((_ident(_stem(image), split), image, gt, subject, split))
    return out


def camus_clips(root: Path, subject_pattern: str | None = None) -> list[ClipRecord]:
    """CAMUS half sequences with their per-frame labels (module docstring)."""
    return [
        ClipRecord(ident, image, gt, subject, split)
        for ident, image, gt, subject, split in _camus_items(root, _CAMUS_SEQUENCE, subject_pattern)
    ]


def camus_images(root: Path, subject_pattern: str | None = None) -> list[ImageRecord]:
    """CAMUS ED/ES frames with their labels (module docstring)."""
    return [
        ImageRecord(ident, image, (gt,), subject, split)
        for ident, image, gt, subject, split in _camus_items(root, _CAMUS_INSTANT, subject_pattern)
    ]
