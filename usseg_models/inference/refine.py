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

**Several structures** (``labels``: a :class:`~usseg_models.labels.LabelSet` of ``n ≥ 2``; the model then has
``1 + n`` output channels, softmax): corrections are label maps (label values), and ``structures`` says which
structures each corrected frame covers (default: all). Each structure is propagated along the clip's one set of
flows from the frames that correct it (:mod:`usseg_models.propagation.structures`), so a structure left uncorrected
on a corrected frame is carried there from elsewhere — never taken as background; a structure corrected nowhere
keeps ``base`` (the label the user sees now), else the model's answer (none in ``"propagate"`` mode). The
per-structure maps become one label map by argmax with a background probability ``max(0, 1 − Σ p)``
(:func:`~usseg_models.propagation.structures.combine`).
The adaptation trains on class indices and **only on frames corrected for every structure** (elsewhere the
uncorrected structures' pixels are unknown, so they are neither trained as background nor masked out of a loss that
has no pixel mask: they are left to propagation); held-out frames, the agreement gate and the fusion's ``τ`` work
as for one structure with scores averaged over structures
(:func:`~usseg_models.inference.fusion.choose_fusion_structures`). With one structure every number is what it was
before label sets.

In every mode the corrected frames are returned exactly as the user drew them (with several structures: the
structures each covers), the model passed in is never
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from usseg_models.errors import UssegError
from usseg_models.inference.adapt import AdaptOutcome, FrameFeatures, adapt_heads, adapt_whole_model, encode_clip
from usseg_models.inference.fusion import FusionChoice, choose_fusion, choose_fusion_structures, fuse
from usseg_models.labels import LabelSet
from usseg_models.networks.checkpoint import unwrap_model
from usseg_models.propagation.flow import ClipFlows
from usseg_models.propagation.propagate import (
    DEFAULT_VARIANT,
    FLOW_VARIANTS,
    clip_flows,
)
from usseg_models.propagation.structures import (
    StructureCorrections,
    choose_flows_structures,
    combine,
    pin_drawn,
    propagate_structures,
)

__all__ = ["REFINE_MODES", "RefineSettings", "RefineResult", "RefinementError", "ClipCache", "check_corrections",
           "check_structures", "held_out_frames", "refine_from_corrections"]

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
        deadline_s: ``"hybrid"``: wall-clock seconds from the start of the refinement by which the adaptation ends
            (``None``: no deadline). A clip's first request computes its flows and features first; with a deadline
            its adaptation gets only the time left, so that first answer comes as quickly as the later ones (where
            those parts are cached and the adaptation gets its whole ``time_budget_s``).
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
    deadline_s: float | None = None
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
        if self.deadline_s is not None and not float(self.deadline_s) >= 0:
            raise ValueError(f"deadline_s must be >= 0 or None, got {self.deadline_s}")
        if not float(self.lr) > 0 or not np.isfinite(float(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def steps_for(self, k: int) -> int:
        """Optimiser steps of a refinement from ``k`` corrected frames (the budget grows with k in hybrid mode)."""
        if self.mode != "hybrid":
            return int(self.max_steps)
        return min(int(self.max_steps), int(self.hybrid_base_steps) + int(self.hybrid_steps_per_frame) * int(k))

    def adapt_seconds(self, elapsed: float) -> float:
        """Adaptation seconds left after ``elapsed`` seconds of the refinement (``time_budget_s`` cut to the
        deadline; never negative)."""
        if self.deadline_s is None:
            return float(self.time_budget_s)
        return max(0.0, min(float(self.time_budget_s), float(self.deadline_s) - float(elapsed)))


@dataclass
class RefineResult:
    """What :func:`refine_from_corrections` returns.

    Attributes:
        masks: uint8 label volume ``(X, Y, T)`` of label values ({0, 1} for one structure); the corrected
            structures of the corrected frames equal the user's masks.
        steps: optimiser steps taken (0 in ``"propagate"`` mode).
        seconds: wall-clock seconds of the adaptation (``predict_seconds`` for the clip prediction).
        stopped_by: ``"steps"``, ``"time"``, ``"cancelled"``, ``"non-finite-loss"`` or ``"no-steps"``.
        mode: the mode used.
        timings: seconds by part (``flow``, ``propagate``, ``features``, ``adapt``, ``predict``, ``fuse``); a part
            served from the cache shows ~0 and is named in ``cached``.
        flow: the flow variant used and, when chosen by leave-one-out, each variant's score.
        fusion: the fusion chosen in ``"hybrid"`` mode (:class:`~usseg_models.inference.fusion.FusionChoice`).
        losses: training loss of every step.
        structures: several structures only: ``{name: {"frames": frames correcting it, "source": "propagated" |
            "model" | "base" | "none"}}`` (where a structure's answer came from; ``"base"``/``"model"``/``"none"``
            for a structure corrected on no frame).
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
    structures: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        if self.structures:
            out["structures"] = {k: dict(v) for k, v in self.structures.items()}
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


def check_corrections(corrected: Mapping[int, Any], num_frames: int, xy: tuple[int, int],
                      labels: LabelSet | None = None) -> dict[int, np.ndarray]:
    """Validate ``{frame index: mask}`` against a cine of ``num_frames`` frames of size ``xy``.

    Masks must be ``(X, Y)``, finite, holding only 0 and the label values of ``labels`` (default: one structure,
    0 and 1; booleans accepted), and indices must lie in ``[0, num_frames)``; at least one frame is needed.

    Returns:
        ``{index: uint8 mask}`` sorted by index.

    Raises:
        RefinementError: naming the first problem found (expected vs got).
    """
    allowed = tuple(sorted((labels or LabelSet.binary()).allowed_values))
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
        if not np.isin(values, allowed).all():
            bad = [v.item() for v in values if v not in allowed][:5]
            if allowed == (0, 1):
                raise RefinementError(f"the mask of corrected frame {t} must hold only 0 and 1, found {bad}")
            raise RefinementError(f"the mask of corrected frame {t} holds label values {bad} outside the label set "
                                  f"{labels.describe()} (allowed: {list(allowed)})")
        out[t] = arr.astype(np.uint8)
    return dict(sorted(out.items()))


def check_structures(structures: Mapping[Any, Any] | None, corrected: Mapping[int, np.ndarray],
                     labels: LabelSet) -> dict[int, tuple[int, ...]]:
    """Validate ``{frame: [label value or structure name, ...]}``: which structures each correction covers.

    Frames not named cover every structure of ``labels``; a named frame must be a corrected one and name at least
    one structure of the set.

    Returns:
        ``{frame: sorted label values}`` for the named frames.

    Raises:
        RefinementError: a frame that is not corrected, an empty list, or a value/name outside the label set.
    """
    out: dict[int, tuple[int, ...]] = {}
    by_name = labels.label_names()
    for key, items in (structures or {}).items():
        try:
            t = int(key)
        except (TypeError, ValueError):
            raise RefinementError(f"structures: frame {key!r} is not an integer") from None
        if t not in corrected:
            raise RefinementError(f"structures are given for frame {t}, which is not a corrected frame "
                                  f"(corrected: {sorted(corrected)})")
        if isinstance(items, (str, bytes, int)) or not isinstance(items, Iterable):
            raise RefinementError(f"structures of frame {t} must be a list of label values or names, got {items!r}")
        values = set()
        for item in items:
            value = by_name.get(item) if isinstance(item, str) else item
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) not in labels.values:
                raise RefinementError(f"structures of frame {t}: {item!r} is not a structure of the label set "
                                      f"{labels.describe()}")
            values.add(int(value))
        if not values:
            raise RefinementError(f"structures of frame {t} is empty: name the structures this correction covers")
        out[t] = tuple(sorted(values))
    return out


def _check_base(base: Any, xy: tuple[int, int], num_frames: int, labels: LabelSet) -> np.ndarray | None:
    """The base label map ``(X, Y, T)`` as uint8 label values (values outside the set become background)."""
    if base is None:
        return None
    arr = np.asarray(base)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if tuple(arr.shape) != (*xy, num_frames):
        raise RefinementError(f"the base label is {tuple(arr.shape)}, the cine is {(*xy, num_frames)} (X, Y, T)")
    try:
        return labels.to_values(labels.to_indices(arr, unknown="background"))
    except ValueError as exc:
        raise RefinementError(f"the base label: {exc}") from None


def _cine_array(cine: Any) -> np.ndarray:
    arr = cine.detach().cpu().numpy() if isinstance(cine, torch.Tensor) else np.asarray(cine)
    if arr.ndim not in (3, 4):
        raise RefinementError(f"a cine must be (X, Y, T) or (X, Y, T, 3), got {arr.shape}")
    return arr


def _structure_probabilities(logits: torch.Tensor, xy: tuple[int, int], num_structures: int) -> np.ndarray:
    """Logits ``(N, C, S, S)`` → float32 ``(n, X, Y, N)``: each structure's probability at the original size (one
    channel: sigmoid then bilinear resize, as :func:`~usseg_models.transforms.pipeline.postprocess_probabilities`;
    ``1 + n`` channels: each channel's logits resized bilinearly, softmax, background dropped)."""
    from usseg_models.transforms.pipeline import postprocess_probabilities
    from usseg_models.transforms.resize import resize_xy

    channels = int(logits.shape[1])
    expected = 1 if num_structures == 1 else 1 + num_structures
    if channels != expected:
        raise RefinementError(f"the model gives {channels} output channel(s); refining {num_structures} "
                              f"structure(s) needs {expected}")
    if channels == 1:
        return np.asarray(postprocess_probabilities(logits, xy), np.float32)[None]
    t = logits.detach().float().cpu()
    resized = torch.stack([resize_xy(t[:, c], xy, "bilinear") for c in range(channels)], 1)   # (N, C, X, Y)
    probs = torch.softmax(resized, dim=1)[:, 1:]                                               # (N, n, X, Y)
    return np.ascontiguousarray(probs.permute(1, 2, 3, 0).numpy().astype(np.float32))


def _model_probabilities(work: nn.Module, spatial_size: int, device: torch.device, amp: bool, xy: tuple[int, int],
                         features: FrameFeatures | None = None, cine: np.ndarray | None = None,
                         targets: list[int] | None = None, out: np.ndarray | None = None,
                         num_structures: int = 1) -> np.ndarray:
    """``(n, X, Y, T)`` float32 per-structure probabilities of the adapted copy (from cached features when given).

    With ``targets`` (features only) just those frames are decoded and written into ``out`` (created as zeros).
    """
    from usseg_models.inference.video import DSANetPredictor

    predictor = DSANetPredictor(work, spatial_size, device, amp=amp)
    if features is None:
        logits = predictor.predict_logits(predictor.pipeline.inputs(cine))
        return _structure_probabilities(logits.cpu(), xy, num_structures)
    n = len(features.pyramids)
    if out is None:
        out = np.zeros((num_structures, *xy, n), np.float32)
    targets = list(range(n)) if targets is None else list(targets)
    if targets:
        logits = predictor.predict_logits_from_features(features.pyramids, targets)
        out[..., targets] = _structure_probabilities(logits.cpu(), xy, num_structures)
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
    labels: LabelSet | None = None,
    structures: Mapping[int, Any] | None = None,
    base: Any = None,
) -> RefineResult:
    """Re-segment ``cine`` from the ``corrected`` frames (see the module docstring for the modes).

    Args:
        model: a DSANet (not modified; a deep copy is adapted). May be ``None`` in ``"propagate"`` mode.
        cine: reader cine ``(X, Y, T)`` or ``(X, Y, T, 3)``.
        corrected: ``{frame index: (X, Y) label map}`` — any frames, anywhere in the clip, at least one; values
            0 and those of ``labels`` ({0, 1} for one structure).
        spatial_size: the network input size of the model's configuration.
        settings: mode, budget and recipe (:class:`RefineSettings`).
        device: torch device; ``amp`` runs bf16 autocast (CUDA).
        cancel: optional callable; when it returns True the adaptation stops early (the clip is still predicted).
        copy_model: adapt a deep copy (default). ``False`` adapts ``model`` itself — only for a caller that already
            made its own copy (the server snapshots its network under a lock).
        cache, cache_key: reuse flows (and, with ``model_version``, backbone features) of this clip between calls;
            ``cache_key`` defaults to :meth:`ClipCache.key_of` the cine.
        model_version: identifies the model's weights for the feature cache (features are cached only when given).
        labels: the structures (default: one, values 0/1). With several, the model has ``1 + n`` output channels.
        structures: ``{frame: [label values or names]}``: the structures a correction covers (frames not named:
            every structure). A structure not covered on a corrected frame is propagated there from the frames that
            do correct it — never taken as background.
        base: optional ``(X, Y, T)`` label map (label values; others count as background), e.g. the label the
            user sees now: a structure corrected on no frame keeps it. Without it such a structure comes from the
            model (``"hybrid"``/``"adapt"``), or stays empty (``"propagate"``).

    Returns:
        :class:`RefineResult` whose ``masks[..., t]`` equal ``corrected[t]`` exactly on the structures it covers.

    Raises:
        RefinementError: corrections that do not fit the cine or the label set (see :func:`check_corrections`,
            :func:`check_structures`), or a model whose output channels do not fit the label set.
    """
    started = time.perf_counter()
    settings = settings or RefineSettings()
    labels = labels or LabelSet.binary()
    arr = _cine_array(cine)
    xy, n = (int(arr.shape[0]), int(arr.shape[1])), int(arr.shape[2])
    fixes = check_corrections(corrected, n, xy, labels)
    corr = StructureCorrections.build(labels, fixes, check_structures(structures, fixes, labels))
    base_map = _check_base(base, xy, n, labels)
    values = labels.values
    if model is not None and settings.mode != "propagate":
        _check_model_channels(model, labels)
    dev = torch.device(device)
    timings: dict[str, float] = {}
    cached: list[str] = []
    if settings.mode == "adapt":
        return _refine_adapt(model, arr, corr, spatial_size, settings, dev, amp, cancel, copy_model, base_map)

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

    per_structure = [corr.masks_of(v) for v in values]
    t0 = time.perf_counter()
    # propagation alone answers fast with the default flow; the hybrid picks the flow per clip (a structure
    # corrected on two frames or more)
    several = max(len(m) for m in per_structure) >= 2
    variants = [DEFAULT_VARIANT] if settings.mode == "propagate" or not several else list(FLOW_VARIANTS)
    candidates = {v: flows_of(v) for v in variants}
    timings["flow"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    variant, flow_scores = choose_flows_structures(candidates, per_structure, xy)
    flows = candidates[variant]
    flow_info = {"variant": variant, "loo_dice": flow_scores}
    props = propagate_structures(flows, corr, xy)
    timings["propagate"] = time.perf_counter() - t0
    held = held_out_frames(corr)
    work = None
    if settings.mode == "propagate" or not held:
        # hybrid without three frames corrected for every structure: none can be held out of the adaptation to
        # judge the model on honestly (fusion.choose_fusion), so the model would never be fused: no learning
        choice = None if settings.mode == "propagate" else choose_fusion(flows, fixes, None, None, held=[])
        missing = [v for v in values if props[v] is None]
        model_probs = None
        if missing and base_map is None and model is not None and settings.mode != "propagate":
            work = copy.deepcopy(unwrap_model(model)) if copy_model else unwrap_model(model)
            t0 = time.perf_counter()
            model_probs = _model_probabilities(work, spatial_size, dev, amp, xy, cine=arr,
                                               num_structures=len(values))
            timings["predict"] = time.perf_counter() - t0
        probs = {v: props[v].probabilities if props[v] is not None
                 else _fallback(v, i, base_map, model_probs, (*xy, n)) for i, v in enumerate(values)}
        out = _label_map(probs, corr)
        return RefineResult(out, 0, 0.0, timings.get("predict", 0.0), "no-steps", sorted(fixes), [], settings.mode,
                            timings, choice, cached, flow_info,
                            _sources(corr, props, base_map, model_probs is not None))

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
    # the fusion is judged on corrected frames the adaptation never sees (nor the propagated frames next to them);
    # only frames corrected for every structure are trained on (elsewhere the uncorrected structures' pixels are
    # unknown, not background)
    taught = [t for t in corr.full_frames() if t not in held]
    distance = np.max(np.stack([props[v].distance for v in values]), axis=0)   # every structure has a correction
    label = np.zeros((*xy, n), np.uint8)
    reach = int(settings.pseudo_distance)
    pseudo = [t for t in range(n) if t not in fixes and distance[t] <= reach
              and not any(abs(t - h) <= reach for h in held)]
    for t in taught:
        label[..., t] = labels.to_indices(fixes[t])
    if pseudo:
        propagated = labels.to_indices(combine([props[v].probabilities[..., pseudo] for v in values], values))
        label[..., pseudo] = propagated
    known = set(taught) | set(pseudo)
    budget = dataclasses.replace(settings, max_steps=settings.steps_for(len(fixes)),
                                 time_budget_s=settings.adapt_seconds(time.perf_counter() - started))
    outcome = adapt_heads(work, features, label, sorted(known), spatial_size, budget, dev, cancel,
                          class_indices=not labels.is_binary)
    timings["adapt"] = outcome.seconds
    # the model is first predicted where the fusion is decided (corrected frames and their neighbours), and on the
    # other frames only when the fusion uses it there
    t0 = time.perf_counter()
    near = np.min(np.stack([props[v].distance for v in values]), axis=0)
    probe = sorted(t for t in range(n) if near[t] <= 2)
    model_probs = _model_probabilities(work, spatial_size, dev, amp, xy, features=features, targets=probe,
                                       num_structures=len(values))
    timings["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    choice = choose_fusion_structures(flows, per_structure, [props[v] for v in values], list(model_probs),
                                      float(settings.min_agreement), held=held, num_frames_corrected=len(fixes))
    timings["fuse"] = time.perf_counter() - t0
    if choice.tau is not None:
        t0 = time.perf_counter()
        rest = [t for t in range(n) if near[t] > 2]
        _model_probabilities(work, spatial_size, dev, amp, xy, features=features, targets=rest, out=model_probs,
                             num_structures=len(values))
        timings["predict"] += time.perf_counter() - t0
    probs = {v: fuse(props[v].probabilities, model_probs[i], props[v].distance, choice.tau)
             for i, v in enumerate(values)}
    out = _label_map(probs, corr)
    logger.info("hybrid refinement of a %d-frame clip from %d corrected frame(s): %d steps, fusion %s (%s)",
                n, len(fixes), outcome.steps, choice.tau, choice.reason)
    del work
    return RefineResult(out, outcome.steps, outcome.seconds, timings["predict"], outcome.stopped_by, sorted(fixes),
                        outcome.losses, "hybrid", timings, choice, cached, flow_info,
                        _sources(corr, props, base_map, False))


def held_out_frames(fixes: Mapping[int, np.ndarray] | StructureCorrections) -> list[int]:
    """The corrected frames the hybrid's adaptation leaves out, to judge the model on honestly: every other one of
    the interior corrections (k = 3: the middle one; 5: two; 9: four); none with fewer than three (the model is then
    never fused: :func:`usseg_models.inference.fusion.choose_fusion`). With several structures, only frames
    corrected for every structure count (:meth:`StructureCorrections.full_frames`)."""
    pool = fixes.full_frames() if isinstance(fixes, StructureCorrections) else fixes
    frames = sorted(int(t) for t in pool)
    return frames[1:-1:2] if len(frames) >= 3 else []


def _check_model_channels(model: nn.Module, labels: LabelSet) -> None:
    channels = getattr(unwrap_model(model), "out_channels", None)
    if channels is not None and int(channels) != labels.out_channels:
        raise RefinementError(f"the model gives {channels} output channel(s); refining {labels.num_structures} "
                              f"structure(s) ({labels.describe()}) needs {labels.out_channels}")


def _fallback(value: int, index: int, base_map: np.ndarray | None, model_probs: np.ndarray | None,
              shape: tuple[int, int, int]) -> np.ndarray:
    """A structure corrected nowhere: the base label's, else the model's probability, else nothing."""
    if base_map is not None:
        return (base_map == value).astype(np.float32)
    if model_probs is not None:
        return np.array(model_probs[index], np.float32)
    return np.zeros(shape, np.float32)


def _sources(corr: StructureCorrections, props: Mapping[int, Any], base_map: np.ndarray | None,
             model: bool) -> dict[str, dict[str, Any]]:
    """``{structure name: {"frames": corrected frames, "source": ...}}`` for the result's summary."""
    out: dict[str, dict[str, Any]] = {}
    if corr.labels.is_binary:
        return out
    for name, value in zip(corr.labels.names, corr.labels.values):
        frames = sorted(corr.masks_of(value))
        source = ("propagated" if props.get(value) is not None else "base" if base_map is not None
                  else "model" if model else "none")
        out[name] = {"frames": frames, "source": source}
    return out


def _label_map(probs: dict[int, np.ndarray], corr: StructureCorrections) -> np.ndarray:
    """Corrected structures pinned to their drawn masks, then one label map (:func:`combine`)."""
    values = corr.labels.values
    probs = {v: np.array(p, np.float32) for v, p in probs.items()}
    pin_drawn(probs, corr)
    return combine([probs[v] for v in values], values)


def _refine_adapt(model, arr, corr: StructureCorrections, spatial_size, settings, dev, amp, cancel, copy_model,
                  base_map) -> RefineResult:
    """Mode ``"adapt"``: every parameter of a copy fine-tuned on the corrected frames (with several structures:
    those corrected for every structure), then the clip predicted."""
    if model is None:
        raise ValueError("adapt refinement needs a model")
    labels, fixes = corr.labels, corr.drawn
    xy, n = (int(arr.shape[0]), int(arr.shape[1])), int(arr.shape[2])
    label = np.zeros((*xy, n), np.uint8)
    taught = corr.full_frames()
    for t in taught:
        label[..., t] = labels.to_indices(fixes[t])
    work = copy.deepcopy(unwrap_model(model)) if copy_model else unwrap_model(model)
    if taught:
        outcome = adapt_whole_model(work, arr, label, taught, spatial_size, settings, dev, amp, cancel,
                                    class_indices=not labels.is_binary)
    else:
        outcome = AdaptOutcome(0, 0.0, "no-steps")
    t0 = time.perf_counter()
    model_probs = _model_probabilities(work, spatial_size, dev, amp, xy, cine=arr, num_structures=len(labels.values))
    predict_seconds = time.perf_counter() - t0
    probs = {v: (model_probs[i] if corr.masks_of(v) or base_map is None else _fallback(v, i, base_map, None, ()))
             for i, v in enumerate(labels.values)}
    out = _label_map(probs, corr)
    logger.info("refined a %d-frame clip from %d corrected frame(s): %d steps in %.1f s (%s)",
                n, len(fixes), outcome.steps, outcome.seconds, outcome.stopped_by)
    del work
    sources = {} if labels.is_binary else {
        name: {"frames": sorted(corr.masks_of(v)), "source": "model" if corr.masks_of(v) or base_map is None
               else "base"} for name, v in zip(labels.names, labels.values)}
    return RefineResult(out, outcome.steps, outcome.seconds, predict_seconds, outcome.stopped_by, sorted(fixes),
                        outcome.losses, "adapt", {"adapt": outcome.seconds, "predict": predict_seconds}, None, [], {},
                        sources)
