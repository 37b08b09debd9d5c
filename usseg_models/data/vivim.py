"""The VTUS / Vivim data set as shipped: folders of frames beside folders of their masks.

**VTUS / Vivim** (``scott-yjyang/Vivim``): ``Train/<clip>/*.jpg`` with ``Train_GT/<clip>/*.png`` and
``Test/<clip>/...`` with ``Test_GT/<clip>/...``: any folder ``<A>`` with a sibling ``<A>_GT`` holding the same clip
folders. Split = ``<A>`` when it is named like a split (``Train``, ``Test``), subject = clip folder name.
Masks pair with frames by file stem; frames without a mask make a sparse-frame clip
(:func:`usseg_models.data.pairing.pair_frame_masks`).
"""

from __future__ import annotations

from pathlib import Path

from usseg_models.data.pairing import frame_folder_clip, sub_folders
from usseg_models.data.records import SPLIT_NAME, ClipRecord, _split_of

__all__ = ["vivim_clips"]


def _gt_sibling(folder: Path) -> Path | None:
    for suffix in ("_GT", "_gt", "_Gt", "-GT", "_GT_mask"):
        cand = folder.parent / f"{folder.name}{suffix}"
        if cand.is_dir():
            return cand
    return None


def vivim_clips(root: Path, subject_pattern: str | None = None) -> list[ClipRecord]:
    """VTUS / Vivim frame folders: ``<A>/<clip>/*.jpg`` with ``<A>_GT/<clip>/*.png`` (module docstring)."""
    clips = []
    for folder in sub_folders(root):
        gt = _gt_sibling(folder)
        if gt is None:
            continue
        split = folder.name if SPLIT_NAME.match(folder.name) else (_split_of(folder / "x", root) if folder != root
                                                                   else None)
        for video in sorted(p for p in folder.iterdir() if p.is_dir()):
            mask_video = gt / video.name
            if mask_video.is_dir():
                rec = frame_folder_clip(video, mask_video, split, subject_pattern)
                if rec is not None:
                    clips.append(rec)
    return clips
