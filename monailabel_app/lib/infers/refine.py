"""``dsanet_refine`` infer task: re-segment a cine after the user corrected a few of its frames.

Request (``POST /infer/dsanet_refine``, MONAI Label's own infer route, so the official client works):

- the cine: ``image=<datastore id>`` or an uploaded ``file``, exactly as for ``/infer/dsanet``;
- ``label``: the partly corrected label file, ``(X, Y, T)`` like the cine (NIfTI, NRRD or ``.seg.nrrd``), holding
  label values; the frames named in ``corrected_frames`` must hold only 0 and the values of the model's label set
  (0 and 1 for a one-structure model; others are refused with 422);
- ``params``: ``{"corrected_frames": [t, ...], "corrected_structures": {"t": [value or name, ...]}, "mode": m,
  "max_steps": n, "time_budget_s": s, "seed": k}`` (all but the first optional; steps and seconds at most the
  server's limits).

Several structures: ``corrected_structures`` says which structures the correction of a frame covers (frames not
listed: every structure). A structure not covered on a corrected frame is propagated there from the frames that do
correct it, never taken as background; a structure corrected on no frame keeps what the uploaded label holds for it
(the label the user sees now; values outside the label set there count as background). See
:func:`usseg_models.inference.refine.refine_from_corrections`.

``mode`` (:data:`usseg_models.inference.refine.REFINE_MODES`): ``"hybrid"`` (default: optical-flow propagation of the
corrected masks, a copy of the served network adapted to the clip with its backbone frozen, fused per frame),
``"propagate"`` (propagation only, no learning: the fast answer a client shows while the user edits) or
``"adapt"`` (the earlier whole-model adaptation). See
:func:`usseg_models.inference.refine.refine_from_corrections`. The served
model is never modified, and refinement is allowed before the model was ever trained (propagation then carries
the answer). What does not change between requests of the same clip — its optical flow, and the frozen backbone's
features for the served model version — is kept in a small in-memory cache (:class:`ClipCache`, 4 clips).

Answer: the refined ``(X, Y, T)`` label in the cine's geometry, the corrected frames exactly as drawn;
``params.refinement`` reports the mode, steps, what stopped the adaptation, the fusion chosen and seconds by part
(``timings``: flow, propagate, features, adapt, predict, fuse; ``cached`` names the parts reused). At most
``refine_max_concurrent`` refinements run at once; more get 429 at once.

Server options (``--conf``): ``refine_max_steps`` (default 60), ``refine_time_budget_s`` (adaptation seconds,
default 1.5 s: a hybrid answer for a 100-frame clip within ~3 s on 2 CPU cores), ``refine_deadline_s`` (seconds
from the start of a hybrid refinement by which its adaptation ends, default ``refine_time_budget_s`` + 0.7 s: a
clip's first request, which computes the clip's flows and backbone features, adapts for what is left),
``refine_max_concurrent`` (default 1).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
import threading
from typing import Any

import numpy as np
from fastapi import HTTPException

from monailabel_app.lib.http import bad_request, unprocessable
from monailabel_app.lib.infers.dsanet import DSANetInfer
from monailabel_app.lib.input_limits import check_decoded_size
from usseg_models.inference import adapt
from usseg_models.inference.refine import (
    REFINE_MODES,
    ClipCache,
    RefinementError,
    RefineSettings,
    check_corrections,
    check_structures,
    refine_from_corrections,
)
from usseg_models.io import load_image
from usseg_models.labels import LabelSet

__all__ = ["DSANetRefineInfer", "RefineLimits"]

logger = logging.getLogger(__name__)

# what a hybrid request of a clip seen before spends before its adaptation (propagation; flows and features are
# cached): the default deadline is the adaptation budget plus this, so a clip's first request, which computes its
# flows and features, adapts for what is left instead of answering later than the edits that follow
DEADLINE_SLACK_S = 0.7


class RefineLimits:
    """Server-side bounds of refinement requests (see the module docstring)."""

    def __init__(self, max_steps: int = 60, time_budget_s: float = 1.5, max_concurrent: int = 1,
                 deadline_s: float | None = None) -> None:
        deadline_s = float(time_budget_s) + DEADLINE_SLACK_S if deadline_s is None else float(deadline_s)
        if int(max_steps) < 1 or not float(time_budget_s) > 0 or int(max_concurrent) < 1 or not deadline_s > 0:
            raise ValueError(
                f"refine limits must be positive: max_steps={max_steps}, time_budget_s={time_budget_s}, "
                f"max_concurrent={max_concurrent}, deadline_s={deadline_s}"
            )
        self.max_steps = int(max_steps)
        self.time_budget_s = float(time_budget_s)
        self.deadline_s = deadline_s
        self.max_concurrent = int(max_concurrent)
        self.slots = threading.BoundedSemaphore(self.max_concurrent)

    def as_dict(self) -> dict[str, Any]:
        return {"max_steps": self.max_steps, "time_budget_s": self.time_budget_s, "deadline_s": self.deadline_s,
                "max_concurrent": self.max_concurrent, "modes": list(REFINE_MODES)}


def _int_list(value: Any, name: str) -> list[int]:
    if isinstance(value, str):
        raise unprocessable(f"{name} must be a JSON list of frame indices, got the string {value!r}")
    if not isinstance(value, (list, tuple)):
        raise unprocessable(f"{name} must be a list of frame indices, got {type(value).__name__}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int):
            raise unprocessable(f"{name} must hold integers, found {v!r}")
        out.append(int(v))
    return out


def _bounded_number(request: dict[str, Any], key: str, limit: float, cast: type) -> float:
    value = request.get(key)
    if value is None:
        return limit
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise unprocessable(f"{key} must be a number, got {value!r}")
    if not 0 < float(value) <= limit:
        raise unprocessable(f"{key} must be in (0, {limit}] (the server's limit), got {value}")
    if cast is int and float(value) != int(value):
        raise unprocessable(f"{key} must be a whole number of steps, got {value}")
    return cast(value)


class DSANetRefineInfer(DSANetInfer):
    """Refine a cine's segmentation from corrected frames (see the module docstring)."""

    def __init__(self, store, labels, label_colors, limits: RefineLimits | None = None):
        super().__init__(store, labels, label_colors,
                         description="DSANet refinement: adapt to a cine from a few corrected frames")
        self.limits = limits or RefineLimits()
        self.cache = ClipCache(max_clips=4)
        adapt.warm_up()  # the first optimiser of a process imports torch._dynamo: not during a user's request

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["refine"] = self.limits.as_dict()
        return info

    def label_set(self) -> LabelSet | None:
        """The model's structures; ``None`` for one structure (refinement then takes 0/1 masks, as always)."""
        if len(self.labels) <= 1:
            return None
        return LabelSet.from_names(dict(self.labels))

    def _structures(self, request: dict[str, Any], corrections: dict[int, np.ndarray],
                    labels: LabelSet | None) -> dict[int, tuple[int, ...]] | None:
        """``params.corrected_structures`` checked against the corrected frames and the label set (422)."""
        given = request.get("corrected_structures")
        if given is None:
            return None
        if not isinstance(given, dict):
            raise unprocessable("corrected_structures must be an object {frame: [label value or name, ...]}, "
                                f"got {type(given).__name__}")
        try:
            return check_structures(given, corrections, labels or LabelSet.binary())
        except RefinementError as exc:
            raise unprocessable(f"corrected_structures: {exc}") from exc

    def _corrections(self, request: dict[str, Any], num_frames: int, xy: tuple[int, int]
                     ) -> tuple[dict[int, np.ndarray], np.ndarray]:
        frames = request.get("corrected_frames")
        if frames is None:
            raise unprocessable("corrected_frames is required: the list of frames you corrected (0-based)")
        frames = _int_list(frames, "corrected_frames")
        if not frames:
            raise unprocessable("corrected_frames is empty: correct at least one frame before refining")
        if len(set(frames)) != len(frames):
            raise unprocessable(f"corrected_frames lists a frame twice: {frames}")
        bad = [t for t in frames if not 0 <= t < num_frames]
        if bad:
            raise unprocessable(f"corrected frame(s) {bad} outside the cine's frames 0..{num_frames - 1}")
        label_path = request.get("label")
        if not isinstance(label_path, str) or not os.path.isfile(label_path):
            raise unprocessable("no label file: send the corrected label as the 'label' file of the request")
        if os.path.dirname(os.path.realpath(label_path)) != os.path.realpath(tempfile.gettempdir()):
            raise bad_request("label must be a file uploaded with the request")
        check_decoded_size(label_path, "label")  # decoded-size limit from the header (413) before any decoding
        label, meta = load_image(label_path)
        label = np.asarray(label)
        if label.ndim == 4 and label.shape[-1] == 1:
            label = label[..., 0]
        if label.ndim != 3 or tuple(label.shape) != (*xy, num_frames):
            raise unprocessable(
                f"the label is shaped {tuple(label.shape)}, the cine is {(*xy, num_frames)} (X, Y, T): "
                "send one label frame per cine frame"
            )
        try:  # the library's own check of each corrected mask (finite, only 0 and the label set's values)
            return check_corrections({t: label[..., t] for t in frames}, num_frames, xy, self.label_set()), label
        except RefinementError as exc:
            raise unprocessable(str(exc)) from exc

    def run(self, data, request, array, meta):
        num_frames, xy = int(data.shape[2]), (int(data.shape[0]), int(data.shape[1]))
        corrections, uploaded = self._corrections(request, num_frames, xy)
        labels = self.label_set()
        structures = self._structures(request, corrections, labels)
        seed = request.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise unprocessable(f"seed must be an integer, got {seed!r}")
        mode = request.get("mode", "hybrid")
        if not isinstance(mode, str) or mode not in REFINE_MODES:
            raise unprocessable(f"mode must be one of {list(REFINE_MODES)}, got {mode!r}")
        settings = RefineSettings(
            mode=mode,
            max_steps=int(_bounded_number(request, "max_steps", self.limits.max_steps, int)),
            time_budget_s=_bounded_number(request, "time_budget_s", self.limits.time_budget_s, float),
            deadline_s=self.limits.deadline_s,
            seed=seed,
        )
        if not self.limits.slots.acquire(blocking=False):
            raise HTTPException(
                status_code=429,
                detail=f"{self.limits.max_concurrent} refinement(s) already running (the server's limit); "
                       "try again in a few seconds",
            )
        try:
            with self.store.lock:
                network, version = self.store.refresh()
                # adapted outside the lock; the served network is untouched (propagation needs no network)
                snapshot = None if mode == "propagate" else copy.deepcopy(network)
            result = refine_from_corrections(snapshot, data, corrections, self.store.spatial_size, settings,
                                 device=self.store.device, amp=self.store.device.type == "cuda", copy_model=False,
                                 cache=self.cache, model_version=json.dumps(version, sort_keys=True, default=str),
                                 labels=labels, structures=structures, base=None if labels is None else uploaded)
        except RefinementError as exc:  # e.g. a served network whose channels do not fit the label set
            raise unprocessable(str(exc)) from exc
        finally:
            self.limits.slots.release()
        extra = {"refinement": result.summary()}
        if not self.store.weights_path():
            extra["untrained"] = True
        return result.masks, version, extra
