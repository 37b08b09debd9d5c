"""Reviewed frames of clip labels: which frames of a label the user checked, kept on the label's node, and the
model output that edits are measured against.

Reviewed frames are the frames the user changed since the module last wrote a model's output (found by comparing
the segments with that output) plus the frames marked reviewed. They are recorded on the label's node (the
segmentation, or the segmentation sequence of a cine sequence) as the attribute ``USSegClip.ReviewedFrames``, so
they are saved with the scene; the model outputs are kept in memory only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from USSegClipLib import USSegClipError, changed_frames, format_frames, parse_frames, review_summary

from .frames import number_of_frames
from .segmentations import label_node, read_masks

__all__ = ["REVIEWED_ATTRIBUTE", "ReviewState"]

REVIEWED_ATTRIBUTE = "USSegClip.ReviewedFrames"


class ReviewState:
    """Reviewed frames of the clip labels in one scene, and the model output each label was last given.

    Args:
        sequences_logic: the Sequences module's logic of the scene (it tells a cine sequence from a volume clip).
    """

    def __init__(self, sequences_logic):
        self.sequences_logic = sequences_logic
        self.baselines: dict[str, dict[str, np.ndarray]] = {}

    def recorded(self, volume, segmentation) -> set[int]:
        """The frames recorded on the label's node (none without a segmentation)."""
        node = label_node(self.sequences_logic, volume, segmentation)
        return set(parse_frames(node.GetAttribute(REVIEWED_ATTRIBUTE))) if node is not None else set()

    def record(self, volume, segmentation, frames: Iterable[int]) -> None:
        """Record ``frames`` on the label's node as its reviewed frames."""
        label_node(self.sequences_logic, volume, segmentation).SetAttribute(REVIEWED_ATTRIBUTE, format_frames(frames))

    def baseline(self, volume, segmentation) -> dict[str, np.ndarray] | None:
        """The segments as the module last wrote them, or None when it wrote none."""
        return self.baselines.get(label_node(self.sequences_logic, volume, segmentation).GetID())

    def set_baseline(self, volume, segmentation, masks: dict[str, np.ndarray] | None = None) -> None:
        """Remember the segments as the module wrote them (a model's output): edits are measured against it."""
        node = label_node(self.sequences_logic, volume, segmentation)
        self.baselines[node.GetID()] = (masks if masks is not None
                                        else read_masks(self.sequences_logic, volume, segmentation))

    def model_output(self, volume, segmentation, reviewed: Iterable[int] = ()) -> None:
        """The label now holds a model's output on every frame but ``reviewed``, which the user checked."""
        self.record(volume, segmentation, reviewed)
        self.set_baseline(volume, segmentation)

    def model_output_on_frame(self, volume, segmentation, frame: int) -> None:
        """One frame of the label holds a model's output again (not reviewed); other frames keep their state."""
        recorded = self.recorded(volume, segmentation) - {int(frame)}
        masks = read_masks(self.sequences_logic, volume, segmentation)
        baseline = self.baseline(volume, segmentation)
        if baseline is not None:  # only this frame becomes model output; other frames keep their comparison point
            for name, mask in masks.items():
                if name in baseline:
                    mask = baseline[name].copy()
                    mask[:, :, frame] = masks[name][:, :, frame]
                    masks[name] = mask
        self.record(volume, segmentation, recorded)
        self.set_baseline(volume, segmentation, masks)

    def edited(self, volume, segmentation) -> list[int]:
        """Frames whose segments differ from what the module last wrote there (none known: no frames)."""
        if volume is None or segmentation is None:
            return []
        baseline = self.baseline(volume, segmentation)
        if baseline is None:
            return []
        return changed_frames(read_masks(self.sequences_logic, volume, segmentation), baseline)

    def reviewed(self, volume, segmentation) -> list[int]:
        """Frames the user edited or marked reviewed, sorted; also recorded on the node (saved with the scene)."""
        if volume is None or segmentation is None:
            return []
        recorded = self.recorded(volume, segmentation)
        frames = sorted(recorded | set(self.edited(volume, segmentation)))
        if set(frames) != recorded:
            self.record(volume, segmentation, frames)
        return frames

    def fold_edits(self, volume, segmentation) -> None:
        """Record the frames edited so far, and take the current segments as the new comparison point."""
        self.reviewed(volume, segmentation)
        self.set_baseline(volume, segmentation)

    def mark(self, volume, segmentation, frame: int, reviewed: bool = True) -> list[int]:
        """Mark (or unmark) one frame reviewed without editing it; edited frames stay reviewed. Returns all."""
        n = number_of_frames(self.sequences_logic, volume)
        if not 0 <= int(frame) < n:
            raise USSegClipError(f"frame {frame} out of range: the clip has {n} frames")
        if segmentation is None:
            raise USSegClipError("segment the clip (or choose its segmentation) first")
        recorded = self.recorded(volume, segmentation)
        recorded = recorded | {int(frame)} if reviewed else recorded - {int(frame)}
        self.record(volume, segmentation, recorded)
        return self.reviewed(volume, segmentation)

    def mark_all(self, volume, segmentation) -> list[int]:
        """Mark every frame reviewed (the user checked the whole clip)."""
        if segmentation is None:
            raise USSegClipError("segment the clip (or choose its segmentation) first")
        self.record(volume, segmentation, range(number_of_frames(self.sequences_logic, volume)))
        return self.reviewed(volume, segmentation)

    def summary(self, volume, segmentation) -> str:
        """``"k of N frames reviewed"`` for the panel."""
        if volume is None or volume.GetImageData() is None:
            return "-"
        return review_summary(self.reviewed(volume, segmentation), number_of_frames(self.sequences_logic, volume))
