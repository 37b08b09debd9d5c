"""The USSegClip Logic's round trips to the MONAI Label server: fetch the next clip to label, upload a clip,
segment a whole clip or one frame, submit the reviewed label, refine a label from the frames the user corrected.

Each function takes the :class:`~USSegClipLogic.logic.USSegClipLogic` whose method it implements (its client,
palettes, clip nodes and review state) and talks to the server only through ``USSegClipLib``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from USSegClipLib import (
    Clip,
    USSegClipError,
    fit_label_to_clip,
    infer_clip,
    infer_frame,
    infer_image,
    matrix_from_text,
    matrix_to_text,
    palette_for_label,
    refine_clip_in_phases,
    refine_model_name,
    rename_labels,
    write_nifti,
    write_seg_nrrd,
)

__all__ = [
    "IMAGE_ID_ATTRIBUTE",
    "SERVER_MATRIX_ATTRIBUTE",
    "load_next_sample",
    "refine_label",
    "segment_clip",
    "segment_frame",
    "submit_label",
    "upload_clip",
]

IMAGE_ID_ATTRIBUTE = "USSegClip.ImageId"
SERVER_MATRIX_ATTRIBUTE = "USSegClip.ServerIJKToRAS"

Progress = Callable[[int, int], None]


def load_next_sample(logic, strategy: str):
    """Ask the server for the next clip, download and load it; the node remembers its datastore id."""
    client = logic.requireClient()
    sample = client.next_sample(strategy)
    if not sample or "id" not in sample:
        raise USSegClipError(f"the server has no clip left to label (strategy {strategy!r})")
    path = client.download_image(sample["id"], tempfile.mkdtemp(prefix="usseg_"))
    volume = logic.loadVolumeFile(path)
    volume.SetAttribute(IMAGE_ID_ATTRIBUTE, sample["id"])
    return volume


def upload_clip(logic, volume) -> str:
    """Add the clip to the server's datastore (its DICOM file when known, else NIfTI); returns the image id."""
    if volume is None:
        raise USSegClipError("select a clip first")
    client = logic.requireClient()
    path = logic.dicomFile(volume) if logic.browserForVolume(volume) is None else None
    if path is None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", volume.GetName()).strip("._") or "clip"
        path = os.path.join(tempfile.mkdtemp(prefix="usseg_"), f"{name}.nii.gz")
        write_nifti(logic.clipFromVolume(volume), path)
    image_id = client.upload_image(path)
    volume.SetAttribute(IMAGE_ID_ATTRIBUTE, image_id)
    return image_id


def segment_clip(logic, volume, model: str, segmentation=None, chunk_frames: int | None = None,
                 progress: Progress | None = None, params: dict[str, Any] | None = None):
    """Run the cine model on every frame and show the result (a segmentation, or one per frame of a sequence);
    no frame of the new label counts as reviewed."""
    if volume is None:
        raise USSegClipError("select a clip first")
    client = logic.requireClient()
    clip = logic.clipFromVolume(volume)
    image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE)
    answer: dict[str, Any] = {}
    if image_id and not chunk_frames:
        if progress:
            progress(0, clip.num_frames)
        server_label = infer_image(client, model, image_id, params=params, answer=answer)
        volume.SetAttribute(SERVER_MATRIX_ATTRIBUTE, matrix_to_text(server_label.ijk_to_ras))
        label = fit_label_to_clip(server_label, clip)
        if progress:
            progress(clip.num_frames, clip.num_frames)
    else:
        label = infer_clip(client, model, clip, chunk_frames=chunk_frames, progress=progress, params=params,
                           answer=answer)
    palette = logic.palette(model, answer)
    segmentation = logic.writeLabel(volume, segmentation, label, palette)
    logic.review.model_output(volume, segmentation)
    return segmentation


def segment_frame(logic, volume, model: str, frame: int, segmentation=None, clip_model: str | None = None,
                  params: dict[str, Any] | None = None):
    """Run the image model on one frame and paint that frame of the segmentation (in ``clip_model``'s segments
    when given); the frame is a model's output again, edits elsewhere are kept."""
    if volume is None:
        raise USSegClipError("select a clip first")
    if not model:
        raise USSegClipError("the server offers no single-image model")
    client = logic.requireClient()
    clip = logic.clipFromVolume(volume)
    answer: dict[str, Any] = {}
    one = infer_frame(client, model, clip, frame, params=params, answer=answer)
    palette = logic.palette(model, answer)
    full = np.zeros(clip.voxels.shape, np.uint8)
    full[:, :, frame] = one.voxels[:, :, 0]
    if clip_model:
        clip_palette = logic.palette(clip_model)
        full = rename_labels(full, {s.name: s.value for s in palette}, {s.name: s.value for s in clip_palette})
        palette = clip_palette
    if segmentation is not None:
        logic.review.fold_edits(volume, segmentation)
    segmentation = logic.writeLabel(volume, segmentation, Clip(full, clip.ijk_to_ras, 2), palette, frames=[frame])
    logic.review.model_output_on_frame(volume, segmentation, frame)
    return segmentation


def server_geometry(logic, volume) -> np.ndarray:
    """IJK→RAS of the clip as the server holds it (after a by-id inference), else the node's."""
    text = volume.GetAttribute(SERVER_MATRIX_ATTRIBUTE)
    return matrix_from_text(text) if text else logic.clipFromVolume(volume).ijk_to_ras


def submit_label(logic, volume, segmentation, model: str, reviewed_frames: Iterable[int] | None = None):
    """Save every frame's label on the server with the frames the user reviewed (uploading the clip first when
    it is not there yet). Returns the server's answer.

    The label holds every structure's segment with its server value (``label_names`` sent along); a frame is
    reviewed as a whole, so on a reviewed frame where the user corrected one structure the others are submitted as
    they are shown.

    Raises:
        USSegClipError: no frame is reviewed (edit frames or mark them reviewed first).
    """
    if volume is None or segmentation is None:
        raise USSegClipError("select the clip and its segmentation first")
    client = logic.requireClient()
    reviewed = sorted(set(reviewed_frames)) if reviewed_frames is not None else logic.reviewedFrames(
        volume, segmentation)
    if not reviewed:
        raise USSegClipError("no frame of this clip is reviewed: correct frames in the Segment Editor or mark "
                             "them reviewed before submitting (the server learns only from reviewed frames)")
    palette = logic.palette(model)
    labels = {s.name: s.value for s in palette}
    label = logic.readLabel(volume, segmentation, labels)
    image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE) or logic.uploadClip(volume)
    matrix = server_geometry(logic, volume)
    directory = tempfile.mkdtemp(prefix="usseg_")
    path = write_nifti(Clip(label.astype(np.uint8), matrix, 2), os.path.join(directory, f"{image_id}.nii.gz"))
    colors = {s.name: s.color for s in palette_for_label(palette)}
    write_seg_nrrd(os.path.join(directory, f"{image_id}.seg.nrrd"), Clip(label, matrix, 2), labels, colors)
    result = client.save_label(image_id, path, params={"label_names": labels, "reviewed_frames": reviewed})
    logic.review.record(volume, segmentation, reviewed)
    logging.info("label of %s saved on the server (%s), reviewed frames %s; local copy in %s", image_id, result,
                 reviewed, directory)
    return result


def refine_label(logic, volume, segmentation, model: str,
                 progress: Callable[[float, float | None, str], None] | None = None,
                 cancel: threading.Event | None = None, params: dict[str, Any] | None = None,
                 on_propagated: Callable[[Any], None] | None = None):
    """Refine the clip's label on the server from the frames the user edited or marked reviewed, in two phases
    (:func:`USSegClipLib.refine_clip_in_phases`): the propagated label is put into the segmentation as soon as it
    arrives and ``on_propagated(segmentation)`` is called, then the refined label replaces it.

    Reviewed frames stay as they are: the frames the user corrected, and any frame edited or marked reviewed while
    the server worked, are never written; every other frame gets the answer and counts as model output. Returns the
    segmentation, or None when ``cancel`` was set while waiting (the propagated label stays when it was shown;
    before it, nothing is changed). ``progress(seconds, time_budget_s or None, phase)`` as in
    :func:`~USSegClipLib.refine_clip_in_phases`.

    With several structures the label sent holds every structure's value (a reviewed frame is corrected as a
    whole: the structures the user did not touch there count as checked) and the answer's values are painted into
    their own segments; with one structure the label sent is binary (0/1), as refinement has always taken it.

    Raises:
        USSegClipError: no reviewed frame, or a server without refinement.
    """
    if volume is None or segmentation is None:
        raise USSegClipError("select the clip and its segmentation first")
    client = logic.requireClient()
    info = logic.serverInfo()
    task = refine_model_name(info, model)
    corrected = logic.reviewedFrames(volume, segmentation)
    if not corrected:
        raise USSegClipError("draw or correct the target on at least one frame (or mark a frame reviewed) "
                             "before refining")
    palette = logic.palette(model)
    label = logic.readLabel(volume, segmentation, {s.name: s.value for s in palette})
    clip = logic.clipFromVolume(volume)
    image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE)
    if len(palette) == 1:
        value = np.uint8(palette[0].value)
        sent = (label == value).astype(np.uint8)

        def to_values(voxels: np.ndarray) -> np.ndarray:
            return voxels.astype(np.uint8) * value
    else:
        sent = label.astype(np.uint8)

        def to_values(voxels: np.ndarray) -> np.ndarray:
            return voxels.astype(np.uint8)
    sent_label = Clip(sent, server_geometry(logic, volume), 2)
    shown = [segmentation]

    def show(result: Clip):
        """Paint a server label into every frame that is not reviewed (now), as model output."""
        reviewed = logic.reviewedFrames(volume, shown[0])  # ⊇ corrected: also frames edited meanwhile
        values = Clip(to_values(fit_label_to_clip(result, clip).voxels), clip.ijk_to_ras, 2)
        others = [t for t in range(clip.num_frames) if t not in set(reviewed)]
        shown[0] = logic.writeLabel(volume, shown[0], values, palette, frames=others)
        logic.review.model_output(volume, shown[0], reviewed)

    def propagated(result: Clip):
        show(result)
        if on_propagated:
            on_propagated(shown[0])

    answer: dict[str, Any] = {}
    refined = refine_clip_in_phases(client, task, sent_label, corrected, clip=None if image_id else clip,
                                    image_id=image_id, params=params, on_propagated=propagated, progress=progress,
                                    cancel=cancel, answer=answer, info=info)
    if refined is None:
        return None
    show(refined)
    logging.info("refined %s from frames %s: %s (propagated first: %s)", volume.GetName(), corrected,
                 answer.get("refinement"), (answer.get("propagated") or {}).get("refinement"))
    return shown[0]
