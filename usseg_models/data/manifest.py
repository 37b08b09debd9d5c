"""CSV manifests: training records read from (and pairs written to) a CSV file.

A **CSV manifest** (:func:`read_manifest`): header ``image,mask[,subject][,split][,frames]``; paths absolute or
relative to the CSV's folder. ``image`` is an image/cine file or a folder of frames; ``mask`` a mask/label file
(several for one image separated by ``;``, merged) or, for a frame folder, a folder of masks paired by stem.
``frames`` (clips only) lists the labelled frames (0-based, separated by spaces or ``;``): a sparse-frame clip.

**Label map** (several structures): an optional first line ``# labels: 1:LV,2:MYO,3:LA`` names the label values the
masks hold (the format of :func:`usseg_models.labels.parse_labels`); :func:`read_manifest_labels` reads it and
training uses it when no ``--labels``/``--label-value`` is given. Other lines starting with ``#`` are comments.

:func:`write_manifest` writes rows, e.g. those of :func:`usseg_models.data.pairing.pair_folders`, in that format.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from pathlib import Path

from usseg_models.data.pairing import _ident, pair_frame_masks
from usseg_models.data.records import ClipRecord, DataLayoutError, ImageRecord, _stem, subject_of
from usseg_models.labels import LabelSet, LabelSetError, parse_labels

__all__ = ["read_manifest", "write_manifest", "read_manifest_labels", "MANIFEST_COLUMNS"]

_LABELS_LINE = re.compile(r"^#\s*labels\s*:\s*(.*)$", re.IGNORECASE)


def _split_comments(path: Path) -> tuple[list[str], list[str]]:
    """``(comment lines, CSV lines)`` of a manifest file."""
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines(keepends=True)
    return [ln.strip() for ln in lines if ln.lstrip().startswith("#")], \
        [ln for ln in lines if not ln.lstrip().startswith("#")]


def read_manifest_labels(path: str | os.PathLike) -> LabelSet | None:
    """The label map of a manifest's ``# labels: ...`` line (``None`` when it has none).

    Raises:
        DataLayoutError: the file is missing, or the line is not a valid label set (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataLayoutError(f"manifest not found: {path}")
    for line in _split_comments(path)[0]:
        m = _LABELS_LINE.match(line)
        if m:
            try:
                return parse_labels(m.group(1))
            except LabelSetError as exc:
                raise DataLayoutError(f"{path}: labels line {line!r}: {exc}") from exc
    return None

MANIFEST_COLUMNS = ("image", "mask", "subject", "split", "frames")


def _resolve(base: Path, text: str) -> Path:
    p = Path(text.strip()).expanduser()
    return p if p.is_absolute() else base / p


def _parse_frames(text: str, where: str) -> tuple[int, ...] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        values = sorted({int(v) for v in re.split(r"[\s;,|]+", text) if v})
    except ValueError as exc:
        raise DataLayoutError(f"{where}: frames must be whole numbers separated by spaces or ';', got {text!r}") \
            from exc
    if any(v < 0 for v in values):
        raise DataLayoutError(f"{where}: frame indices are 0-based and must be >= 0, got {text!r}")
    return tuple(values)


def _unique_ids(stems: list[str], paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    return [s if seen[s] == 1 else f"{p.parent.name}/{s}" for s, p in zip(stems, paths)]


def read_manifest(
    path: str | os.PathLike, kind: str, subject_pattern: str | None = None
) -> list[ClipRecord] | list[ImageRecord]:
    """Records from a CSV manifest (format in the module docstring).

    Args:
        path: the CSV file.
        kind: ``"clips"`` (:class:`ClipRecord`) or ``"images"`` (:class:`ImageRecord`).
        subject_pattern: regex with one group for :func:`subject_of` when the ``subject`` column is empty.

    Raises:
        DataLayoutError: missing columns, missing files, or bad frame lists (message names the row).
    """
    path = Path(path)
    if kind not in ("clips", "images"):
        raise ValueError(f"kind must be 'clips' or 'images', got {kind!r}")
    if not path.is_file():
        raise DataLayoutError(f"manifest not found: {path}")
    base = path.parent
    reader = csv.DictReader(_split_comments(path)[1])
    cols = [c.strip().lower() for c in reader.fieldnames or []]
    if "image" not in cols or "mask" not in cols:
        raise DataLayoutError(f"{path}: a manifest needs the columns image,mask[,subject][,split][,frames]; "
                              f"found {cols}")
    rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    images, entries = [], []
    for n, row in enumerate(rows, start=2):
        where = f"{path}, line {n}"
        if not row.get("image"):
            continue
        image = _resolve(base, row["image"])
        masks = [_resolve(base, m) for m in row.get("mask", "").split(";") if m.strip()]
        if not image.exists():
            raise DataLayoutError(f"{where}: image {image} not found")
        if not masks:
            raise DataLayoutError(f"{where}: no mask given for {image}")
        for m in masks:
            if not m.exists():
                raise DataLayoutError(f"{where}: mask {m} not found")
        images.append(image)
        entries.append((where, image, masks, row.get("subject") or None, row.get("split") or None,
                        _parse_frames(row.get("frames", ""), where)))
    if not entries:
        raise DataLayoutError(f"{path}: the manifest lists no image")
    ids = _unique_ids([image.name if image.is_dir() else _stem(image) for image in images], images)
    out = []
    for ident, (where, image, masks, subject, split, frames) in zip(ids, entries):
        subject = subject or subject_of(ident.split("/")[-1], subject_pattern)
        rid = _ident(ident, split)
        if kind == "images":
            if image.is_dir() or frames is not None:
                raise DataLayoutError(f"{where}: an image manifest row needs an image file (no frames column)")
            out.append(ImageRecord(rid, image, tuple(masks), subject, split))
            continue
        if image.is_dir():
            if len(masks) != 1 or not masks[0].is_dir():
                raise DataLayoutError(f"{where}: a folder of frames needs a folder of masks")
            paired = pair_frame_masks(image, masks[0])
            if paired is None:
                raise DataLayoutError(f"{where}: no mask in {masks[0]} matches a frame of {image}")
            frame_files, labels, labelled = paired
            if frames is not None:
                missing = [t for t in frames if t >= len(frame_files) or labels[t] is None]
                if missing:
                    raise DataLayoutError(f"{where}: frames {missing} have no mask file (or are out of range)")
                labels = tuple(m if i in set(frames) else None for i, m in enumerate(labels))
                labelled = frames
            out.append(ClipRecord(rid, frame_files, labels, subject, split, labelled))
        else:
            if len(masks) != 1 or masks[0].is_dir():
                raise DataLayoutError(f"{where}: a cine file needs one label volume file")
            out.append(ClipRecord(rid, image, masks[0], subject, split, frames))
    return out


def write_manifest(rows: Iterable[dict], path: str | os.PathLike, labels: LabelSet | None = None) -> Path:
    """Write manifest rows (dicts with keys of :data:`MANIFEST_COLUMNS`; lists are joined) as CSV, with the label
    map line ``# labels: ...`` first when ``labels`` is given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    cols = [c for c in MANIFEST_COLUMNS if c in ("image", "mask") or any(r.get(c) not in (None, "") for r in rows)]
    with open(path, "w", newline="") as fh:
        if labels is not None:
            fh.write(f"# labels: {labels.describe()}\n")
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        for r in rows:
            out = {}
            for c in cols:
                v = r.get(c)
                if isinstance(v, (list, tuple)):
                    v = (";" if c == "mask" else " ").join(str(x) for x in v)
                out[c] = "" if v is None else str(v)
            writer.writerow(out)
    return path
