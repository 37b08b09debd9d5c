"""Running server inference on a clip (whole clip in chunks, with progress) or on one frame.

A clip held in Slicer is sent as NIfTI files with its IJK→RAS; the label that comes back is placed on the clip's
voxel grid with :func:`USSegClipLib.labels.fit_label_to_clip`.

Long clips are sent in chunks of frames so the GUI can show real progress. DSANet segments frame t from frames
t, t-1 and t-2 (and, at the start of a clip, frames 0 and 1 from the frames after them, up to frame 3), so each
chunk also carries ``context_frames`` frames before it and ``lookahead_frames`` after it; their results are
dropped. With both at least the model's temporal reach (2 and 2 for DSANet), chunked results equal a whole-clip
run.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from .client import MonaiLabelClient
from .errors import ClipGeometryError
from .geometry import Clip
from .labels import fit_label_to_clip
from .volumeio import read_volume, write_nifti

__all__ = ["frame_chunks", "infer_clip", "infer_frame", "infer_image"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


def frame_chunks(
    num_frames: int, chunk_frames: int | None, context_frames: int = 2, lookahead_frames: int = 2
) -> list[tuple[int, int, int, int]]:
    """Split ``num_frames`` frames into chunks.

    Returns:
        list of ``(first_sent, first_kept, stop_kept, stop_sent)``: frames ``first_sent:stop_sent`` are sent and
        the results of ``first_kept:stop_kept`` are kept; the kept ranges tile ``0:num_frames`` exactly once.

    Raises:
        ValueError: non-positive frame or chunk counts, negative context or look-ahead.

    Examples::

        frame_chunks(10, 4, 2, 2)  # [(0, 0, 4, 6), (2, 4, 8, 10), (6, 8, 10, 10)]
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if context_frames < 0 or lookahead_frames < 0:
        raise ValueError(f"context and look-ahead frames must be >= 0, got {context_frames}, {lookahead_frames}")
    if chunk_frames is None or chunk_frames >= num_frames:
        return [(0, 0, num_frames, num_frames)]
    if chunk_frames <= 0:
        raise ValueError(f"chunk_frames must be positive, got {chunk_frames}")
    chunks = []
    for start in range(0, num_frames, chunk_frames):
        stop = min(start + chunk_frames, num_frames)
        chunks.append((max(0, start - context_frames), start, stop, min(num_frames, stop + lookahead_frames)))
    return chunks


def _frames(clip: Clip, start: int, stop: int) -> Clip:
    """Frames ``start:stop`` of a frames-last clip as a clip placed where they were."""
    m = clip.ijk_to_ras.copy()
    m[:3, 3] = (clip.ijk_to_ras @ np.array([0.0, 0.0, start, 1.0]))[:3]
    return Clip(clip.voxels[:, :, start:stop], m, 2)


def infer_clip(
    client: MonaiLabelClient,
    model: str,
    clip: Clip,
    chunk_frames: int | None = None,
    context_frames: int = 2,
    lookahead_frames: int = 2,
    progress: ProgressCallback | None = None,
    params: dict[str, Any] | None = None,
    workdir: str | None = None,
    answer: dict[str, Any] | None = None,
) -> Clip:
    """Segment every frame of ``clip`` with ``model`` on the server.

    Args:
        client: the server client.
        model: model name, e.g. ``"dsanet"``.
        clip: the clip (any frame axis).
        chunk_frames: frames per request (None: the whole clip in one request).
        context_frames: earlier frames sent along with each chunk and then dropped.
        lookahead_frames: later frames sent along with each chunk and then dropped.
        progress: called as ``progress(frames_done, num_frames)`` after each chunk (and with 0 first); raise in
            it to cancel.
        params: extra inference parameters sent with each request.
        workdir: directory for the temporary files (a new temporary directory by default).
        answer: when given, filled with the server's result parameters (``label_names``, ``label_colors``, ...).

    Returns:
        The label clip on ``clip``'s grid and matrix (frame axis as ``clip``).

    Raises:
        ServerError: any server failure (message from the server).
        ClipGeometryError: a returned label does not match the frames sent.
    """
    last = clip.with_frames_last()
    n = last.num_frames
    chunks = frame_chunks(n, chunk_frames, context_frames, lookahead_frames)
    out = np.zeros(last.voxels.shape, dtype=np.uint8)
    if progress:
        progress(0, n)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for index, (first_sent, first_kept, stop, stop_sent) in enumerate(chunks):
            part = _frames(last, first_sent, stop_sent)
            path = write_nifti(part, os.path.join(tmp, f"clip_{index:04d}.nii.gz"))
            result = client.infer(model, file=path, params=params)
            if answer is not None:
                answer.update(result.params)
            label = fit_label_to_clip(read_volume(result.save_label(tmp), 2), part)
            out[:, :, first_kept:stop] = label.voxels[:, :, first_kept - first_sent : stop - first_sent]
            logger.info("%s: frames %d-%d of %d segmented", model, first_kept, stop - 1, n)
            if progress:
                progress(stop, n)
    return clip.from_frames_last(out)


def infer_frame(
    client: MonaiLabelClient,
    model: str,
    clip: Clip,
    frame_index: int,
    params: dict[str, Any] | None = None,
    workdir: str | None = None,
    answer: dict[str, Any] | None = None,
) -> Clip:
    """Segment one frame of ``clip`` with an image model (e.g. ``"intrasense"``).

    The frame is sent as a one-slice NIfTI ``(X, Y, 1)`` with the frame's own matrix (as Slicer sends 2-D images).

    ``answer``, when given, is filled with the server's result parameters.

    Returns:
        A one-frame label clip ``(X, Y, 1)`` placed at the frame (``Clip.single_frame`` geometry).
    """
    if not 0 <= frame_index < clip.num_frames:
        raise ClipGeometryError(f"frame {frame_index} out of range: the clip has {clip.num_frames} frames")
    frame = clip.single_frame(frame_index)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = write_nifti(frame, os.path.join(tmp, f"frame_{frame_index:04d}.nii.gz"))
        result = client.infer(model, file=path, params=params)
        if answer is not None:
            answer.update(result.params)
        return fit_label_to_clip(read_volume(result.save_label(tmp), 2), frame)


def infer_image(
    client: MonaiLabelClient,
    model: str,
    image_id: str,
    frame_axis: int = 2,
    params: dict[str, Any] | None = None,
    workdir: str | None = None,
    answer: dict[str, Any] | None = None,
) -> Clip:
    """Segment a datastore image by id; returns the label as the server wrote it (its own matrix).

    ``answer``, when given, is filled with the server's result parameters.
    """
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        result = client.infer(model, image_id=image_id, params=params)
        if answer is not None:
            answer.update(result.params)
        return read_volume(result.save_label(tmp), frame_axis)
