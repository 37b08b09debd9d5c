"""Refining a clip's segmentation from the frames the user corrected (``POST /infer/dsanet_refine``).

The server segments every frame again from the corrected frames; the corrected frames come back as drawn. Its
``mode`` parameter (listed in ``GET /info/`` as ``models[task]["refine"]["modes"]``) picks how: ``"propagate"``
carries the corrected masks through the clip by optical flow (no learning, about a second), ``"hybrid"`` (the
default) adds a copy of the model adapted to the clip and fuses both per frame (a few seconds), ``"adapt"`` is
adaptation only.

- :func:`refine_clip` sends one request (the server's default mode, or ``params["mode"]``).
- :func:`refine_clip_in_phases` sends a ``propagate`` request first and hands its label to ``on_propagated`` (the
  fast answer to show while the user goes on), then the ``hybrid`` request whose label it returns; with a server
  that lists no ``propagate`` mode (an older server) only the second.

Several structures: the label holds label values (those the server's task lists in ``GET /info/``,
``models[task]["labels"]``), and ``corrected_structures`` (``{frame: [label values]}``) says which structures the
correction of a frame covers (frames not named: every structure). The server propagates a structure not covered on a
corrected frame from the frames that do correct it; only the covered structures of a corrected frame are kept as
drawn.

A request can take several seconds, so the requests go from a worker thread while the caller waits, reports
progress and honours a cancel flag: cancelling stops the wait and returns ``None`` at once (the server finishes its
bounded work and the answer is dropped; a second phase not started yet is not sent).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .client import InferResult, MonaiLabelClient
from .errors import ClipGeometryError, USSegClipError
from .geometry import Clip
from .labels import fit_label_to_clip
from .volumeio import read_volume, write_nifti

__all__ = [
    "DEFAULT_REFINE_SUFFIX",
    "task_label_values",
    "PHASE_PROPAGATE",
    "PHASE_REFINE",
    "refine_clip",
    "refine_clip_in_phases",
    "refine_model_name",
    "refine_modes",
    "refine_status",
]

logger = logging.getLogger(__name__)

DEFAULT_REFINE_SUFFIX = "_refine"
PHASE_PROPAGATE = "propagate"  # the fast answer: propagation only
PHASE_REFINE = "refine"  # the refined answer (hybrid on servers with modes, else the server's only kind)

RefineProgress = Callable[[float, "float | None"], None]
PhaseProgress = Callable[[float, "float | None", str], None]


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


def refine_modes(info: dict[str, Any], task: str) -> list[str]:
    """The ``mode`` values the server's refinement ``task`` takes (``GET /info/``); ``[]`` for a server whose
    refinement has no modes."""
    described = (info.get("models") or {}).get(task) or {}
    modes = (described.get("refine") or {}).get("modes") or []
    return [str(m) for m in modes]


def task_label_values(info: dict[str, Any], task: str) -> list[int] | None:
    """The label values of the server's ``task`` (``GET /info/``, ``models[task]["labels"]``) when it segments
    several structures; ``None`` for one structure (refinement then takes a binary 0/1 label)."""
    labels = ((info.get("models") or {}).get(task) or {}).get("labels") or {}
    if isinstance(labels, dict) and len(labels) > 1:
        return sorted(int(v) for v in labels.values())
    return None


def refine_status(phase: str, seconds: float, propagated: bool = False) -> str:
    """The panel's progress text while a refinement phase runs: ``"propagating… 0 s"``, then (with the propagated
    label shown) ``"propagated — refining… 3 s"``; ``"refining… 3 s"`` for a refinement without a first phase."""
    if phase == PHASE_PROPAGATE:
        return f"propagating… {seconds:.0f} s"
    return f"{'propagated — ' if propagated else ''}refining… {seconds:.0f} s"


@dataclass
class _Inputs:
    """A refinement's validated inputs and their files (in ``tmp``, removed after the last request)."""

    label: Clip  # as given
    last: Clip  # frames last
    frames: list[int]
    tmp: str
    label_path: str
    clip_path: str | None
    image_id: str | None
    structures: dict[int, list[int]]  # frames whose correction covers only some structures


def _structures(corrected_structures: dict[int, Iterable[int]] | None, frames: list[int],
                values: set[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for frame, items in (corrected_structures or {}).items():
        f = int(frame)
        if f not in frames:
            raise ValueError(f"corrected_structures names frame {f}, which is not a corrected frame {frames}")
        chosen = sorted({int(v) for v in items})
        if not chosen:
            raise ValueError(f"corrected_structures of frame {f} is empty: name the structures you corrected")
        bad = [v for v in chosen if v not in values or v == 0]
        if bad:
            raise ValueError(f"corrected_structures of frame {f}: {bad} not among the label values {sorted(values)}")
        out[f] = chosen
    return out


def _inputs(label: Clip, corrected_frames: Iterable[int], clip: Clip | None, image_id: str | None,
            workdir: str | None, label_values: Iterable[int] | None = None,
            corrected_structures: dict[int, Iterable[int]] | None = None) -> _Inputs:
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
    allowed = {0, 1} if label_values is None else {0, *(int(v) for v in label_values)}
    if not values <= allowed:
        if label_values is None:
            raise ClipGeometryError(f"a refinement label must be binary (0/1), it holds values {sorted(values)}")
        raise ClipGeometryError(f"the refinement label holds values {sorted(values - allowed)} outside the server's "
                                f"label values {sorted(allowed)}")
    structures = _structures(corrected_structures, frames, allowed)
    tmp = tempfile.mkdtemp(prefix="usseg_refine_", dir=workdir)
    label_path = write_nifti(Clip(last.voxels.astype(np.uint8), last.ijk_to_ras, 2), os.path.join(tmp, "label.nii.gz"))
    clip_path = write_nifti(clip.with_frames_last(), os.path.join(tmp, "clip.nii.gz")) if clip is not None else None
    return _Inputs(label, last, frames, tmp, label_path, clip_path, image_id, structures)


def _with_structures(params: dict[str, Any] | None, inputs: _Inputs) -> dict[str, Any] | None:
    """The request parameters with ``corrected_structures`` when some frame covers only some structures."""
    if not inputs.structures:
        return params
    return {**(params or {}), "corrected_structures": {str(f): v for f, v in inputs.structures.items()}}


def _send(client: MonaiLabelClient, model: str, inputs: _Inputs, requests: list[dict[str, Any] | None],
          cancel: threading.Event | None) -> queue.Queue:
    """Send the requests one after the other from a worker thread, through a clone of ``client`` (the caller may
    keep using it). Each answer goes into the returned queue as ``(result, None)``, a failure as ``(None, error)``
    and ends the series; no request is sent once ``cancel`` is set. The input files are removed at the end."""
    answers: queue.Queue = queue.Queue()
    worker_client = client.clone()

    def work() -> None:
        try:
            for params in requests:
                if cancel is not None and cancel.is_set():
                    break
                try:
                    answers.put((worker_client.refine(model, inputs.label_path, inputs.frames, image_id=inputs.image_id,
                                                      file=inputs.clip_path, params=params), None))
                except BaseException as e:  # handed to the waiting thread
                    answers.put((None, e))
                    break
        finally:
            shutil.rmtree(inputs.tmp, ignore_errors=True)  # also when the caller stopped waiting

    threading.Thread(target=work, name="usseg-refine", daemon=True).start()
    return answers


def _wait(answers: queue.Queue, model: str, report: Callable[[float], None] | None, cancel: threading.Event | None,
          poll_interval: float) -> InferResult | None:
    """The next answer; ``report(seconds_waited)`` about every ``poll_interval`` seconds and once more at the end;
    ``None`` once ``cancel`` is set. Raises the request's error."""
    start = time.monotonic()
    while True:
        try:
            result, error = answers.get(timeout=poll_interval)
            break
        except queue.Empty:
            if cancel is not None and cancel.is_set():
                logger.info("refinement with %s cancelled after %.1f s; its answer will be dropped", model,
                            time.monotonic() - start)
                return None
            if report:
                report(time.monotonic() - start)
    if error is not None:
        raise error
    if cancel is not None and cancel.is_set():
        return None
    if report:
        report(time.monotonic() - start)
    return result


def _label_of(result: InferResult, inputs: _Inputs, workdir: str | None) -> Clip:
    """The answer's label on the given label's grid, matrix and frame axis."""
    with tempfile.TemporaryDirectory(dir=workdir) as out_dir:
        refined = read_volume(result.save_label(out_dir), 2)
    return inputs.label.from_frames_last(fit_label_to_clip(refined, inputs.last).voxels)


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
    label_values: Iterable[int] | None = None,
    corrected_structures: dict[int, Iterable[int]] | None = None,
) -> Clip | None:
    """Refine ``label`` from its corrected frames on the server (one request) and return the refined label of
    every frame.

    Args:
        client: the server client (the request goes through a clone of it, so the caller may keep using it).
        model: the refinement task, e.g. ``"dsanet_refine"`` (see :func:`refine_model_name`).
        label: the clip's label, frames last, on the clip's grid: binary (0/1), or the server's label values
            (``label_values``); the corrected frames are the user's, the others the label shown now.
        corrected_frames: frames the user drew or checked (0-based, at least one).
        clip: the clip itself, uploaded with the request; or
        image_id: the clip's datastore id (exactly one of ``clip`` and ``image_id``).
        params: extra request parameters (``mode``, ``max_steps``, ``time_budget_s``, ``seed``).
        progress: called as ``progress(seconds_waited, time_budget_s or None)`` about every ``poll_interval``
            seconds while the server works, and once more when the answer is in.
        cancel: when set, waiting stops and ``None`` is returned.
        poll_interval: seconds between progress calls / cancel checks.
        answer: when given, filled with the server's result parameters (``refinement``, ``label_names``, ...).
        workdir: directory for the temporary files.
        label_values: the task's label values when it segments several structures (:func:`task_label_values`);
            ``None``: a binary label.
        corrected_structures: ``{frame: [label values]}``: the structures the correction of a frame covers
            (frames not named: every structure).

    Returns:
        The refined label as a clip on ``label``'s grid and matrix, or ``None`` when cancelled.

    Raises:
        ValueError: no corrected frame, not exactly one of ``clip`` and ``image_id``, or ``corrected_structures``
            naming a frame that is not corrected or a value outside ``label_values``.
        ClipGeometryError: a corrected frame outside the clip, label values outside the allowed ones, or a refined
            label of another shape.
        ServerError: the server refused (a 4xx names the problem) or failed.
    """
    inputs = _inputs(label, corrected_frames, clip, image_id, workdir, label_values, corrected_structures)
    budget = (params or {}).get("time_budget_s")
    start = time.monotonic()
    result = _wait(_send(client, model, inputs, [_with_structures(params, inputs)], cancel), model,
                   (lambda s: progress(s, budget)) if progress else None, cancel, poll_interval)
    if result is None:
        return None
    if answer is not None:
        answer.update(result.params)
    refined = _label_of(result, inputs, workdir)
    logger.info("refined %d frames from %d corrected ones in %.1f s (%s)", inputs.last.num_frames, len(inputs.frames),
                time.monotonic() - start, result.params.get("refinement"))
    return refined


def _as_drawn(refined: Clip, inputs: _Inputs) -> Clip:
    """``refined`` with the corrected frames exactly as the user drew them (on a frame that covers only some
    structures, those structures' pixels; the others keep the answer)."""
    axis = inputs.label.frame_axis
    voxels = np.array(refined.voxels, copy=True)
    whole = [f for f in inputs.frames if f not in inputs.structures]
    index = [slice(None)] * 3
    index[axis] = whole
    voxels[tuple(index)] = inputs.label.voxels[tuple(index)]
    for frame, covered in inputs.structures.items():
        index[axis] = frame
        drawn, answer = inputs.label.voxels[tuple(index)], voxels[tuple(index)]
        mine = np.isin(drawn, covered)
        answer[np.isin(answer, covered) & ~mine] = 0  # a covered structure only where it was drawn
        answer[mine] = drawn[mine]
    return Clip(voxels, refined.ijk_to_ras, axis)


def refine_clip_in_phases(
    client: MonaiLabelClient,
    model: str,
    label: Clip,
    corrected_frames: Iterable[int],
    clip: Clip | None = None,
    image_id: str | None = None,
    params: dict[str, Any] | None = None,
    on_propagated: Callable[[Clip], None] | None = None,
    progress: PhaseProgress | None = None,
    cancel: threading.Event | None = None,
    poll_interval: float = 0.1,
    answer: dict[str, Any] | None = None,
    workdir: str | None = None,
    info: dict[str, Any] | None = None,
    label_values: Iterable[int] | None = None,
    corrected_structures: dict[int, Iterable[int]] | None = None,
) -> Clip | None:
    """Refine ``label`` in two phases: the propagated label first (handed to ``on_propagated``), then the refined one.

    Phase :data:`PHASE_PROPAGATE` asks for ``mode: "propagate"`` (about a second) and calls ``on_propagated(clip)``
    with its label; phase :data:`PHASE_REFINE` asks for ``params["mode"]`` (default ``"hybrid"``) and its label is
    returned. The second request is sent as soon as the first is answered, while ``on_propagated`` runs. A server
    that does not list ``"propagate"`` among the task's modes (``GET /info/``) gets only the second request (without
    ``mode`` when it lists no modes at all): what :func:`refine_clip` does. In both labels the corrected frames are
    exactly as in ``label``. The input files are written once for both requests.

    Args:
        client, model, label, corrected_frames, clip, image_id, poll_interval, workdir: as for :func:`refine_clip`.
        params: extra request parameters of both requests (``max_steps``, ``time_budget_s``, ``seed``; ``mode`` of
            the second).
        on_propagated: called with the propagated label (on ``label``'s grid, matrix and frame axis) in the
            calling thread, before the refined one is waited for.
        progress: called as ``progress(seconds_waited_in_phase, time_budget_s or None, phase)`` while the server
            works and once more at the end of each phase (``time_budget_s`` is None in the propagation phase).
        cancel: when set, waiting stops and ``None`` is returned; during the second phase the propagated label was
            handed over already (and stays wherever the caller put it).
        answer: when given, filled with the second answer's parameters, and the first answer's under
            ``"propagated"``.
        info: the server's ``GET /info/`` (asked for when not given).
        label_values: as for :func:`refine_clip`; default: the task's label values in ``info`` when it segments
            several structures (:func:`task_label_values`), else a binary label.
        corrected_structures: as for :func:`refine_clip`.

    Returns:
        The refined label on ``label``'s grid and matrix, or ``None`` when cancelled.

    Raises:
        as :func:`refine_clip`; a failure of the second phase comes after ``on_propagated`` was called.
    """
    info = client.info() if info is None else info
    modes = refine_modes(info, model)
    if label_values is None:
        label_values = task_label_values(info, model)
    final = dict(params or {})
    if modes and "mode" not in final and "hybrid" in modes:
        final["mode"] = "hybrid"
    phases: list[tuple[str, dict[str, Any]]] = [(PHASE_REFINE, final)]
    if PHASE_PROPAGATE in modes and final.get("mode") != PHASE_PROPAGATE:
        phases.insert(0, (PHASE_PROPAGATE, {**final, "mode": PHASE_PROPAGATE}))
    inputs = _inputs(label, corrected_frames, clip, image_id, workdir, label_values, corrected_structures)
    answers = _send(client, model, inputs, [_with_structures(p, inputs) for _, p in phases], cancel)
    start = time.monotonic()
    for phase, request in phases:
        budget = request.get("time_budget_s") if phase == PHASE_REFINE else None
        result = _wait(answers, model, (lambda s, b=budget, p=phase: progress(s, b, p)) if progress else None,
                       cancel, poll_interval)
        if result is None:
            return None
        refined = _as_drawn(_label_of(result, inputs, workdir), inputs)
        logger.info("%s: %d frames from %d corrected ones after %.1f s (%s)", phase, inputs.last.num_frames,
                    len(inputs.frames), time.monotonic() - start, result.params.get("refinement"))
        if phase == PHASE_PROPAGATE:
            if answer is not None:
                answer["propagated"] = dict(result.params)
            if on_propagated:
                on_propagated(refined)
        elif answer is not None:
            answer.update(result.params)
    return refined
