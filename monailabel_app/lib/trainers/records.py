"""The datastore's labelled studies as training records (no staging folder, no symlinks).

Each final label becomes a :class:`~usseg_models.data.records.ClipRecord` (cines) or
:class:`~usseg_models.data.records.ImageRecord` (images) whose subject is the study id. A cine label's info may
carry ``reviewed_frames`` (sent by the Slicer module or any client with ``PUT /datastore/label``): only those
frames supervise training (targets and auxiliary terms); without it every frame counts as reviewed.
Studies of the other kind, unreadable headers and labels without a file are skipped with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

from monailabel_app.lib.inputs import item_kind, resolve_input_file
from usseg_models.data.records import ClipRecord, ImageRecord

__all__ = ["reviewed_frames_of", "datastore_records"]

logger = logging.getLogger(__name__)


def reviewed_frames_of(info: dict[str, Any] | None) -> tuple[int, ...] | None:
    """The ``reviewed_frames`` of a label's info as sorted unique ints, or ``None`` (= every frame).

    Malformed entries (not a list of non-negative integers) are ignored with a warning, meaning every frame.
    """
    value = (info or {}).get("reviewed_frames")
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        logger.warning("ignoring malformed reviewed_frames %r (every frame counts as reviewed)", value)
        return None
    return tuple(sorted(set(value)))


def datastore_records(datastore: Datastore, kind: str) -> dict[str, ClipRecord | ImageRecord]:
    """``{study id: record}`` of the labelled studies of ``kind`` (``"cine"`` or ``"image"``)."""
    tag = DefaultLabelTag.FINAL.value
    out: dict[str, ClipRecord | ImageRecord] = {}
    for study in sorted(datastore.get_labeled_images()):
        try:
            image = resolve_input_file(datastore.get_image_uri(study))
            label = datastore.get_label_uri(study, tag)
        except Exception as exc:  # noqa: BLE001 - one bad study must not stop training on the others
            logger.warning("skipping %s: %s", study, exc)
            continue
        if not label or not Path(label).is_file() or item_kind(image) != kind:
            continue
        if kind == "cine":
            reviewed = reviewed_frames_of(datastore.get_label_info(study, tag))
            if reviewed is not None and not reviewed:
                logger.info("skipping %s: its label has no reviewed frame", study)
                continue
            out[study] = ClipRecord(study, Path(image), Path(label), subject=study, labelled=reviewed)
        else:
            out[study] = ImageRecord(study, Path(image), (Path(label),), subject=study)
    return out
