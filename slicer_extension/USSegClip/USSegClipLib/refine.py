"""Refining a clip's segmentation from the frames the user corrected (``POST /infer/dsanet_refine``).

The server adapts a copy of its model to the clip on the corrected frames for a bounded time and segments every
frame again; the corrected frames come back as drawn. One request can take several seconds, so
:func:`refine_clip` sends it from a worker thread and, while it waits, reports progress and honours a cancel flag:
cancelling stops the wait and returns ``None`` at once (the server finishes its bounded work and the answer is
dropped).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .client import InferResult, MonaiLabelClient
from .errors import ClipGeometryError, USSegClipError
from .geometry import Clip
from .labels import fit_label_to_clip
from .volumeio import read_volume, write_nifti

__all__ = ["DEFAULT_REFINE_SUFFIX", "refine_clip", "refine_model_name"]

logger = logging.getLogger(__name__)

DEFAULT_REFINE_SUFFIX = "_refine"

RefineProgress = Callable[[float, "float | None"], None]


def refine_model_name(info: dict[str, Any], model: str, suffix: str = DEFAULT_REFINE_SUFFIX) -> str:
    """The refinement task of ``model`` that the server offers (``dsanet`` → ``dsanet_refine``).

    Raises:
        USSegClipError: the server has no such task (an older usseg server).
    """
    name = model if model.endswith(suffix) else f"{model}{suffix}"
    if name not in info.get("models", {}):
        raise USSegClipError(
            f"the server offers no refinement for {model!r} (no model {name!r}); update the usseg server to a "
            "version with refinement"
        )
    return name


def refine_clip(
    client: MonaiLabelClient,
    model: str,
    label: Clip,
    corrected_frames: Iterable[int],
    clip: Clip | None = None,
    image_id: str | None = None,
    params: dict[str, Any] | None = None,
    progress: RefineProgress | None = None,
    cancel: threading.Event | None = None,
    poll_interval: float = 0.1,
    answer: dict[str, Any] | None = None,
    workdir: str | None = None,
) -> Clip | None:
    """Refine ``label`` from its corrected frames on the server and return the refined label of every frame.

    Args:
        client: the server client (the request goes through a clone of it, so the caller may keep using it).
        model: the refinement task, e.g. ``"dsanet_refine"`` (see :func:`refine_model_name`).
        label: the clip's label, binary (0/1), frames last, on the clip's grid; only corrected frames matter.
        corrected_frames: frames the user drew or checked (0-based, at least one).
        clip: the clip itself, uploaded with the request; or
        image_id: the clip's datastore id (exactly one of ``clip`` and ``image_id``).
        params: extra request parameters (``max_steps``, ``time_budget_s``, ``seed``).
        progress: called as ``progress(seconds_waited, time_budget_s or None)`` about every ``poll_interval``
            seconds while the server works, and once more when the answer is in.
        cancel: when set, waiting stops and ``None`` is returned.
        poll_interval: seconds between progress calls / cancel checks.
        answer: when given, filled with the server's result parameters (``refinement``, ``label_names``, ...).
        workdir: directory for the temporary files.

    Returns:
        The refined label as a clip on ``label``'s grid and matrix, or ``None`` when cancelled.

    Raises:
        ValueError: no corrected frame, or not exactly one of ``clip`` and ``image_id``.
        ClipGeometryError: a corrected frame outside the clip, a non-binary label, or a refined label of another shape.
        ServerError: the server refused (a 4xx names the problem) or failed.
    """
    frames = sorted({int(f) for f in corrected_frames})
    if not frames:
        raise ValueError("refinement needs at least one corrected frame: draw or check a frame first")
    if (clip is None) == (image_id is None):
        raise ValueError("give exactly one of clip (uploaded) or image_id (a datastore image)")
    last = label.with_frames_last()
    bad = [f for f in frames if not 0 <= f < last.num_frames]
    if bad:
        raise ClipGeometryError(f"corrected frames {bad} lie outside the clip's {last.num_frames} frames")
    values = set(np.unique(last.voxels).tolist())
    if not values <= {0, 1}:
        raise ClipGeometryError(f"a refinement label must be binary (0/1), it holds values {sorted(values)}")
    budget = (params or {}).get("time_budget_s")
    outcome: dict[str, Any] = {}
    done = threading.Event()
    tmp = tempfile.mkdtemp(prefix="usseg_refine_", dir=workdir)
    label_path = write_nifti(Clip(last.voxels.astype(np.uint8), last.ijk_to_ras, 2), os.path.join(tmp, "label.nii.gz"))
    clip_path = None
    if clip is not None:
        clip_path = write_nifti(clip.with_frames_last(), os.path.join(tmp, "clip.nii.gz"))
    worker_client = client.clone()

    def work() -> None:
        try:
            outcome["result"] = worker_client.refine(model, label_path, frames, image_id=image_id, file=clip_path,
                                                     params=params)
        except BaseException as e:  # handed to the waiting thread
            outcome["error"] = e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the inputs; also when the caller stopped waiting
            done.set()

    start = time.monotonic()
    thread = threading.Thread(target=work, name="usseg-refine", daemon=True)
    thread.start()
    while not done.wait(poll_interval):
        if cancel is not None and cancel.is_set():
            logger.info("refinement with %s cancelled after %.1f s; its answer will be dropped", model,
                        time.monotonic() - start)
            return None
        if progress:
            progress(time.monotonic() - start, budget)
    if "error" in outcome:
        raise outcome["error"]
    if cancel is not None and cancel.is_set():
        return None
    result: InferResult = outcome["result"]
    if progress:
        progress(time.monotonic() - start, budget)
    if answer is not None:
        answer.update(result.params)
    with tempfile.TemporaryDirectory(dir=workdir) as out_dir:
        refined = read_volume(result.save_label(out_dir), 2)
    fitted = fit_label_to_clip(refined, last)
    logger.info("refined %d frames from %d corrected ones in %.1f s (%s)", last.num_frames, len(frames),
                time.monotonic() - start, result.params.get("refinement"))
    out = fitted.voxels
    if label.frame_axis != 2:
        order = [a for a in range(3) if a != label.frame_axis] + [label.frame_axis]
        out = out.transpose(np.argsort(order))
    return Clip(out, label.ijk_to_ras.copy(), label.frame_axis)
