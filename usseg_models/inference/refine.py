"""Clip refinement: re-segment a cine from a few frames the user corrected.

Three modes (:data:`REFINE_MODES`):

- ``"propagate"`` — no learning: the corrected masks are carried through the clip along DIS optical flow, both ways,
  blended by temporal distance (:mod:`usseg_models.propagation.propagate`). Well under a second once the clip's flows
  are known; what a user sees first while editing.
- ``"hybrid"`` (default) — propagation, plus a copy of DSANet adapted to the clip with its backbone frozen
  (:func:`usseg_models.inference.adapt.adapt_heads`: backbone features computed once per clip), on the corrected
  frames and, as extra targets, the propagated masks of the frames right next to them; then per-frame fusion of
  the two by distance to the nearest correction, its weight chosen from the clip itself (agreement gate and
  leave-one-out, :mod:`usseg_models.inference.fusion`). The step budget grows with the number of corrections.
- ``"adapt"`` — the earlier recipe, kept for comparison: every parameter of a copy fine-tuned on the corrected frames
  with the training pipeline's flips (:func:`usseg_models.inference.adapt.adapt_whole_model`), then the clip
  predicted by the adapted copy.

In every mode the corrected frames are returned exactly as the user drew them, the model passed in is never
modified, and a :class:`ClipCache` lets a caller (the server) reuse what does not change between requests of the
same clip: its flows and — for one model version — the frozen backbone's features.

Examples::

    >>> from usseg_models.networks import build_network
    >>> net = build_network("dsanet", "small")
    >>> cine = np.random.randint(0, 255, (80, 70, 6), dtype=np.uint8)
    >>> fix = np.zeros((80, 70), np.uint8); fix[20:40, 30:50] = 1
    >>> result = refine_from_corrections(net, cine, {2: fix}, spatial_size=64, settings=RefineSettings(max_steps=2))
    >>> result.masks.shape, bool((result.masks[..., 2] == fix).all()), result.mode
    ((80, 70, 6), True, 'hybrid')
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from usseg_models.errors import UssegError
from usseg_models.inference.adapt import FrameFeatures, adapt_heads, adapt_whole_model, encode_clip
from usseg_models.inference.fusion import FusionChoice, choose_fusion, fuse
from usseg_models.networks.checkpoint import unwrap_model
from usseg_models.propagation.flow import ClipFlows
from usseg_models.propagation.propagate import (
    DEFAULT_VARIANT,
    FLOW_VARIANTS,
    choose_flows,
    clip_flows,
    propagate_masks,
)

__all__ = ["REFINE_MODES", "RefineSettings", "RefineResult", "RefinementError", "ClipCache", "check_corrections",
           "refine_from_corrections"]

logger = logging.getLogger(__name__)

REFINE_MODES = ("hybrid", "propagate", "adapt")


class RefinementError(UssegError, ValueError):
    """The corrected frames do not fit the cine (message names the problem: index, shape or values)."""


@dataclass
class RefineSettings:
    """Mode, budget and recipe of one refinement.

    Attributes:
        mode: one of :data:`REFINE_MODES`.
        max_steps: optimiser steps at most (each on ``batch_size`` windows). In ``"hybrid"`` mode the steps used
            are ``min(max_steps, hybrid_base_steps + hybrid_steps_per_frame · k)`` for k corrected frames.
        time_budget_s: wall-clock seconds for the adaptation at most (prediction of the clip comes on top).
        lr: Adam learning rate (both recipes; 1e-3 made the frozen-backbone adaptation diverge on a real clip).
        batch_size: windows per step (drawn with replacement from the targets).
        weight_decay: Adam weight decay (the training recipe's).
        grad_clip_value: clip gradients by value (``None`` = off).
        augment: random flips, the same for every frame of a window (``"adapt"`` only).
        freeze_batchnorm: keep batch-norm layers in eval mode while adapting (always in ``"hybrid"``).
        pseudo_distance: ``"hybrid"``: propagated masks of frames at most this far from a correction become extra
            adaptation targets (0 = corrected frames only).
        min_agreement: ``"hybrid"``: the agreement gate of :func:`usseg_models.inference.fusion.choose_fusion`.
        seed: random seed (sampling and augmentation).
    """

    mode: str = "hybrid"
    max_steps: int = 40
    time_budget_s: float = 10.0
    lr: float = 3e-4
    batch_size: int = 2
    weight_decay: float = 5e-4
    grad_clip_value: float | None = 0.5
    augment: bool = True
    freeze_batchnorm: bool = True
    hybrid_base_steps: int = 16
    hybrid_steps_per_frame: int = 2
    pseudo_distance: int = 1
    min_agreement: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in REFINE_MODES:
            raise ValueError(f"mode must be one of {list(REFINE_MODES)}, got {self.mode!r}")
        if int(self.max_steps) < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        if not float(self.time_budget_s) >= 0:  # also refuses NaN
            raise ValueError(f"time_budget_s must be >= 0, got {self.time_budget_s}")
        if not float(self.lr) > 0 or not np.isfinite(float(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def steps_for(self, k: int) -> int:
        """Optimiser steps of a refinement from ``k`` corrected frames (the budget grows with k in hybrid mode)."""
        if self.mode != "hybrid":
            return int(self.max_steps)
        return min(int(self.max_steps), int(self.hybrid_base_steps) + int(self.hybrid_steps_per_frame) * int(k))


@dataclass
class RefineResult:
    """What :func:`refine_from_corrections` returns.

    Attributes:
        masks: uint8 {0, 1} label volume ``(X, Y, T)``; the corrected frames equal the user's masks.
        steps: optimiser steps taken (0 in ``"propagate"`` mode).
        seconds: wall-clock seconds of the adaptation (``predict_seconds`` for the clip prediction).
        stopped_by: ``"steps"``, ``"time"``, ``"cancelled"``, ``"non-finite-loss"`` or ``"no-steps"``.
        mode: the mode used.
        timings: seconds by part (``flow``, ``propagate``, ``features``, ``adapt``, ``predict``, ``fuse``); a part
            served from the cache shows ~0 and is named in ``cached``.
        flow: the flow variant used and, when chosen by leave-one-out, each variant's score.
        fusion: the fusion chosen in ``"hybrid"`` mode (:class:`~usseg_models.inference.fusion.FusionChoice`).
        losses: training loss of every step.
    """

    masks: np.ndarray
    steps: int
    seconds: float
    predict_seconds: float
    stopped_by: str
    corrected_frames: list[int]
    losses: list[float] = field(default_factory=list)
    mode: str = "adapt"
    timings: dict[str, float] = field(default_factory=dict)
    fusion: FusionChoice | None = None
    cached: list[str] = field(default_factory=list)
    flow: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (for server responses and benchmarks)."""
        out = {
            "mode": self.mode,
            "corrected_frames": list(self.corrected_frames),
            "steps": int(self.steps),
            "seconds": round(float(self.seconds), 3),
            "predict_seconds": round(float(self.predict_seconds), 3),
            "stopped_by": self.stopped_by,
            "final_loss": round(float(self.losses[-1]), 5) if self.losses else None,
            "timings": {k: round(float(v), 3) for k, v in self.timings.items()},
            "cached": list(self.cached),
        }
        if self.flow:
            out["flow"] = {"variant": self.flow.get("variant"),
                           "loo_dice": {k: round(float(v), 4) for k, v in self.flow.get("loo_dice", {}).items()}}
        if self.fusion is not None:
            out["fusion"] = self.fusion.summary()
        return out


class ClipCache:
    """What stays the same between refinements of one clip: its flows, and backbone features per model version.

    Keys are the caller's (e.g. a hash of the cine's bytes, :meth:`key_of`); at most ``max_clips`` clips are kept
    (least recently used first out). Thread-safe.
    """

    def __init__(self, max_clips: int = 4) -> None:
        self.max_clips = int(max_clips)
        self._flows: OrderedDict[tuple[str, str], ClipFlows] = OrderedDict()
        self._features: OrderedDict[tuple[str, str], FrameFeatures] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key_of(cine: np.ndarray) -> str:
        """Content key of a cine (shape, dtype and bytes)."""
        arr = np.ascontiguousarray(cine)
        digest = hashlib.blake2b(arr.view(np.uint8).reshape(-1), digest_size=16)
        digest.update(repr((arr.shape, str(arr.dtype))).encode())
        return digest.hexdigest()

    def _get(self, table: OrderedDict, key: Any) -> Any:
        with self._lock:
            if key in table:
                table.move_to_end(key)
                return table[key]
        return None

    def _put(self, table: OrderedDict, key: Any, value: Any) -> None:
        with self._lock:
            table[key] = value
            table.move_to_end(key)
            while len(table) > self.max_clips:
                table.popitem(last=False)

    def flows(self, key: str, variant: str) -> ClipFlows | None:
        return self._get(self._flows, (key, variant))

    def put_flows(self, key: str, variant: str, flows: ClipFlows) -> None:
        self._put(self._flows, (key, variant), flows)

    def features(self, key: str, model_version: str) -> FrameFeatures | None:
        return self._get(self._features, (key, model_version))

    def put_features(self, key: str, model_version: str, features: FrameFeatures) -> None:
        self._put(self._features, (key, model_version), features)


def check_corrections(corrected: Mapping[int, Any], num_frames: int, xy: tuple[int, int]) -> dict[int, np.ndarray]:
    """Validate ``{frame index: mask}`` against a cine of ``num_frames`` frames of size ``xy``.

    Masks must be ``(X, Y)`` with only the values 0 and 1 (booleans accepted), finite, and indices must lie in
    ``[0, num_frames)``; at least one frame is needed.

    Returns:
        ``{index: uint8 mask}`` sorted by index.

    Raises:
        RefinementError: naming the first problem found (expected vs got).
    """
    if not corrected:
        raise RefinementError("no corrected frames given: refinement needs at least one corrected frame")
    out: dict[int, np.ndarray] = {}
    for key, mask in corrected.items():
        try:
            t = int(key)
        except (TypeError, ValueError):
            raise RefinementError(f"corrected frame index {key!r} is not an integer") from None
        if isinstance(key, float) and key != t:
            raise RefinementError(f"corrected frame index {key!r} is not an integer")
        if not 0 <= t < num_frames:
            raise RefinementError(f"corrected frame {t} is outside the cine's frames 0..{num_frames - 1}")
        arr = np.asarray(mask)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if tuple(arr.shape) != tuple(xy):
            raise RefinementError(f"the mask of corrected frame {t} is {tuple(arr.shape)}, the cine's frames are {xy}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise RefinementError(f"the mask of corrected frame {t} holds NaN or infinite values")
        values = np.unique(arr)
        if not np.isin(values, (0, 1)).all():
            bad = [v.item() for v in values if v not in (0, 1)][:5]
            raise RefinementError(f"the mask of corrected frame {t} must hold only 0 and 1, found {bad}")
        out[t] = arr.astype(np.uint8)
    return dict(sorted(out.items()))


def _cine_array(cine: Any) -> np.ndarray:
    arr = cine.detach().cpu().numpy() if isinstance(cine, torch.Tensor) else np.asarray(cine)
    if arr.ndim not in (3, 4):
        raise RefinementError(f"a cine must be (X, Y, T) or (X, Y, T, 3), got {arr.shape}")
    return arr


def _model_probabilities(work: nn.Module, spatial_size: int, device: torch.device, amp: bool, xy: tuple[int, int],
                         features: FrameFeatures | None = None, cine: np.ndarray | None = None,
                         targets: list[int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``(X, Y, T)`` float32 probabilities of the adapted copy (from cached features when given).

    With ``targets`` (features only) just those frames are decoded and written into ``out`` (created as zeros).
    """
    from usseg_models.inference.video import DSANetPredictor

    predictor = DSANetPredictor(work, spatial_size, device, amp=amp)
    if features is None:
        logits = predictor.predict_logits(predictor.pipeline.inputs(cine))
        return np.asarray(predictor.pipeline.inverse_probabilities(logits.cpu(), xy), np.float32)
    n = len(features.pyramids)
    if out is None:
        out = np.zeros((*xy, n), np.float32)
    targets = list(range(n)) if targets is None else list(targets)
    if targets:
        logits = predictor.predict_logits_from_features(features.pyramids, targets)
        out[..., targets] = predictor.pipeline.inverse_probabilities(logits.cpu(), xy).reshape(*xy, len(targets))
    return out


def refine_from_corrections(
    model: nn.Module | None,
    cine: Any,
    corrected: Mapping[int, Any],
    spatial_size: int,
    settings: RefineSettings | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
    cancel: Callable[[], bool] | None = None,
    copy_model: bool = True,
    cache: ClipCache | None = None,
    cache_key: str | None = None,
    model_version: str | None = None,
) -> RefineResult:
    """Re-segment ``cine`` from the ``corrected`` frames (see the module docstring for the modes).

    Args:
        model: a DSANet (not modified; a deep copy is adapted). May be ``None`` in ``"propagate"`` mode.
        cine: reader cine ``(X, Y, T)`` or ``(X, Y, T, 3)``.
        corrected: ``{frame index: (X, Y) mask in {0, 1}}`` — any frames, anywhere in the clip, at least one.
        spatial_size: the network input size of the model's configuration.
        settings: mode, budget and recipe (:class:`RefineSettings`).
        device: torch device; ``amp`` runs bf16 autocast (CUDA).
        cancel: optional callable; when it returns True the adaptation stops early (the clip is still predicted).
        copy_model: adapt a deep copy (default). ``False`` adapts ``model`` itself — only for a caller that already
            made its own copy (the server snapshots its network under a lock).
        cache, cache_key: reuse flows (and, with ``model_version``, backbone features) of this clip between calls;
            ``cache_key`` defaults to :meth:`ClipCache.key_of` the cine.
        model_version: identifies the model's weights for the feature cache (features are cached only when given).

    Returns:
        :class:`RefineResult` whose ``masks[..., t]`` equal ``corrected[t]`` exactly.

    Raises:
        RefinementError: corrections that do not fit the cine (see :func:`check_corrections`).
    """
    settings = settings or RefineSettings()
    arr = _cine_array(cine)
    xy, n = (int(arr.shape[0]), int(arr.shape[1])), int(arr.shape[2])
    fixes = check_corrections(corrected, n, xy)
    dev = torch.device(device)
    timings: dict[str, float] = {}
    cached: list[str] = []
    if settings.mode == "adapt":
        return _refine_adapt(model, arr, fixes, spatial_size, settings, dev, amp, cancel, copy_model)

    key = cache_key or (ClipCache.key_of(arr) if cache is not None else None)

    def flows_of(variant: str) -> ClipFlows:
        found = cache.flows(key, variant) if cache is not None else None
        if found is not None:
            cached.append(f"flows:{variant}")
            return found
        computed = clip_flows(arr, variant)
        if cache is not None:
            cache.put_flows(key, variant, computed)
        return computed

    t0 = time.perf_counter()
    # propagation alone answers fast with the default flow; the hybrid picks the flow per clip (k >= 2)
    variants = [DEFAULT_VARIANT] if settings.mode == "propagate" or len(fixes) < 2 else list(FLOW_VARIANTS)
    candidates = {v: flows_of(v) for v in variants}
    timings["flow"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    variant, flow_scores = choose_flows(candidates, fixes, xy)
    flows = candidates[variant]
    flow_info = {"variant": variant, "loo_dice": flow_scores}
    prop = propagate_masks(flows, fixes, xy)
    timings["propagate"] = time.perf_counter() - t0
    if settings.mode == "propagate" or not held_out_frames(fixes):
        # hybrid from one or two corrected frames: none can be held out of the adaptation to judge the model on
        # honestly (fusion.choose_fusion), so the model would never be fused: no learning
        choice = None if settings.mode == "propagate" else choose_fusion(flows, fixes, prop, None, held=[])
        out = prop.masks
        _restore(out, fixes)
        return RefineResult(out, 0, 0.0, 0.0, "no-steps", sorted(fixes), [], settings.mode, timings, choice, cached,
                            flow_info)

    if model is None:
        raise ValueError("hybrid refinement needs a model")
    work = copy.deepcopy(unwrap_model(model)) if copy_model else unwrap_model(model)
    t0 = time.perf_counter()
    features = cache.features(key, model_version) if (cache is not None and model_version) else None
    if features is None:
        features = encode_clip(work, arr, spatial_size, dev)
        if cache is not None and model_version:
            cache.put_features(key, model_version, features)
    else:
        cached.append("features")
    timings["features"] = time.perf_counter() - t0
    # the fusion is judged on corrected frames the adaptation never sees (nor the propagated frames next to them)
    held = held_out_frames(fixes)
    taught = {t: m for t, m in fixes.items() if t not in held}
    label = np.zeros((*xy, n), np.uint8)
    reach = int(settings.pseudo_distance)
    pseudo = [t for t in range(n) if t not in fixes and prop.distance[t] <= reach
              and not any(abs(t - h) <= reach for h in held)]
    for t, m in taught.items():
        label[..., t] = m
    for t in pseudo:
        label[..., t] = prop.masks[..., t]
    known = set(taught) | set(pseudo)
    budget = dataclasses.replace(settings, max_steps=settings.steps_for(len(fixes)))
    outcome = adapt_heads(work, features, label, sorted(known), spatial_size, budget, dev, cancel)
    timings["adapt"] = outcome.seconds
    # the model is first predicted where the fusion is decided (corrected frames and their neighbours), and on the
    # other frames only when the fusion uses it there
    t0 = time.perf_counter()
    probe = sorted(t for t in range(n) if prop.distance[t] <= 2)
    model_probs = _model_probabilities(work, spatial_size, dev, amp, xy, features=features, targets=probe)
    timings["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    choice = choose_fusion(flows, fixes, prop, model_probs, float(settings.min_agreement), held=held)
    timings["fuse"] = time.perf_counter() - t0
    if choice.tau is not None:
        t0 = time.perf_counter()
        rest = [t for t in range(n) if prop.distance[t] > 2]
        _model_probabilities(work, spatial_size, dev, amp, xy, features=features, targets=rest, out=model_probs)
        timings["predict"] += time.perf_counter() - t0
    out = (fuse(prop.probabilities, model_probs, prop.distance, choice.tau) >= 0.5).astype(np.uint8)
    _restore(out, fixes)
    logger.info("hybrid refinement of a %d-frame clip from %d corrected frame(s): %d steps, fusion %s (%s)",
                n, len(fixes), outcome.steps, choice.tau, choice.reason)
    del work
    return RefineResult(out, outcome.steps, outcome.seconds, timings["predict"], outcome.stopped_by, sorted(fixes),
                        outcome.losses, "hybrid", timings, choice, cached, flow_info)


def held_out_frames(fixes: Mapping[int, np.ndarray]) -> list[int]:
    """The corrected frames the hybrid's adaptation leaves out, to judge the model on honestly: every other one of
    the interior corrections (k = 3: the middle one; 5: two; 9: four); none with fewer than three (the model is then
    never fused: :func:`usseg_models.inference.fusion.choose_fusion`)."""
    frames = sorted(int(t) for t in fixes)
    return frames[1:-1:2] if len(frames) >= 3 else []


def _restore(out: np.ndarray, fixes: Mapping[int, np.ndarray]) -> None:
    for t, m in fixes.items():
        out[..., t] = m


def _refine_adapt(model, arr, fixes, spatial_size, settings, dev, amp, cancel, copy_model) -> RefineResult:
    """Mode ``"adapt"``: every parameter of a copy fine-tuned on the corrected frames, then the clip predicted."""
    if model is None:
        raise ValueError("adapt refinement needs a model")
    xy, n = (int(arr.shape[0]), int(arr.shape[1])), int(arr.shape[2])
    label = np.zeros((*xy, n), np.uint8)
    for t, m in fixes.items():
        label[..., t] = m
    work = copy.deepcopy(unwrap_model(model)) if copy_model else unwrap_model(model)
    outcome = adapt_whole_model(work, arr, label, sorted(fixes), spatial_size, settings, dev, amp, cancel)
    t0 = time.perf_counter()
    out = (_model_probabilities(work, spatial_size, dev, amp, xy, cine=arr) >= 0.5).astype(np.uint8)
    predict_seconds = time.perf_counter() - t0
    _restore(out, fixes)
    logger.info("refined a %d-frame clip from %d corrected frame(s): %d steps in %.1f s (%s)",
                n, len(fixes), outcome.steps, outcome.seconds, outcome.stopped_by)
    del work
    return RefineResult(out, outcome.steps, outcome.seconds, predict_seconds, outcome.stopped_by, sorted(fixes),
                        outcome.losses, "adapt", {"adapt": outcome.seconds, "predict": predict_seconds})
