"""DSANet inference on cines: whole clips (batched over target frames) and streaming, frame by frame.

Each target frame ``t`` is segmented from the window ``window_indices(N, t)`` = ``[t, t-1, t-2]`` (the shared
rule of :mod:`usseg_models.transforms.clip`, also used in training). Every frame's **backbone** features are
computed once and reused for all (up to three) windows that hold it; the per-frame decoders depend on the frame's
position in the window, so they run per target (see :class:`~usseg_models.networks.nets.dsanet.DSANet`).

Streaming follows the shape of SAM2's video predictor: an explicit state object, frames fed one at a time, masks
yielded by a generator as soon as they are final::

    predictor = DSANetPredictor(model, spatial_size=352, device="cuda", amp=True)
    state = predictor.init_state()
    for frame in reader_frames:                 # (X, Y) or (X, Y, 3) arrays as they arrive
        predictor.add_frame(state, frame)
        for t, mask in predictor.propagate(state):
            show(t, mask)                       # (X, Y) uint8
    for t, mask in predictor.propagate(state, flush=True):   # end of the cine
        show(t, mask)

**Start-of-clip delay.** At a cine's start the window uses following frames (``t = 0 → [0, 1, 2]``,
``t = 1 → [1, 0, 3]``), so target 0 is final when frame 2 has arrived and target 1 when frame 3 has; masks are
yielded in frame order, so the first two outputs come late (target 2 comes with target 1), after which each
target's mask is yielded as soon as its own frame has been added. A cine shorter than the look-ahead (fewer than
four frames) is completed by ``propagate(state, flush=True)``, which applies the short-clip rule of
:func:`~usseg_models.transforms.clip.window_indices`. Streaming and clip-level masks are identical.

Inputs come from the one network-input pipeline (:class:`~usseg_models.transforms.pipeline.ModelPipeline`, kind
``"cine"``: the inference stages, defaults: scaling by the stored type, no fan mask) and masks go back through its
inverse. Streaming runs the pipeline on each frame on its own, which gives the same tensors as the whole cine.

**Structures.** :attr:`DSANetPredictor.labels` is the model's :class:`~usseg_models.labels.LabelSet` (from the
checkpoint's ``extra["labels"]``; one structure, value 1, by default). Masks hold its **label values**: 0/1 for one
structure as always, ``0, v_1, ..., v_n`` for several (argmax of the ``1 + n`` logit channels).
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from usseg_models.labels import LabelSet, labels_from_checkpoint
from usseg_models.networks.checkpoint import unwrap_model
from usseg_models.transforms.clip import window_indices
from usseg_models.transforms.pipeline import ModelPipeline

__all__ = ["StreamState", "DSANetPredictor"]

logger = logging.getLogger(__name__)

WINDOW = 3


@dataclass
class StreamState:
    """State of one streamed cine (create it with :meth:`DSANetPredictor.init_state`).

    Attributes:
        num_frames: frames added so far.
        original_xy: ``(X, Y)`` of the reader frames (``None`` until the first frame, or for tensor input).
        features: cached backbone pyramids by frame index (only frames a pending target can still need).
        next_target: first target frame whose mask has not been computed yet.
        ready: computed ``(frame_idx, mask)`` pairs not yet yielded by :meth:`DSANetPredictor.propagate`.
        finished: the cine was flushed; no more frames can be added.
        frames_encoded: number of backbone evaluations (one per frame).
    """

    num_frames: int = 0
    original_xy: tuple[int, int] | None = None
    features: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    next_target: int = 0
    ready: collections.deque = field(default_factory=collections.deque)
    finished: bool = False
    frames_encoded: int = 0


class DSANetPredictor:
    """Clip-level and streaming DSANet inference with one backbone pass per frame.

    Args:
        model: a :class:`~usseg_models.networks.nets.dsanet.DSANet` (wrappers such as DDP are unwrapped); it is
            moved to ``device`` and put in eval mode.
        spatial_size: square network input size ``S`` (multiple of 32; the configuration's ``spatial_size``).
        device: torch device for the computation.
        amp: run under bfloat16 autocast (CUDA, or CPUs with bf16 support); logits are returned as float32.
        batch_size: target frames decoded together (and new frames encoded together) in :meth:`predict_clip`.
        labels: the structures of the model's output channels (default :meth:`LabelSet.binary`); must fit the
            model's ``out_channels``.

    Raises:
        ValueError: a bad ``spatial_size``/``batch_size``, or ``labels`` that do not fit the model's channels.

    Examples::

        >>> from usseg_models.networks import build_network
        >>> net = build_network("dsanet", "small")
        >>> predictor = DSANetPredictor(net, spatial_size=64)
        >>> cine = np.random.randint(0, 255, (120, 90, 5), dtype=np.uint8)    # reader (X, Y, T)
        >>> predictor.predict_clip(cine).shape                                 # label volume (X, Y, T)
        (120, 90, 5)
    """

    def __init__(
        self,
        model: nn.Module,
        spatial_size: int,
        device: str | torch.device = "cpu",
        amp: bool = False,
        batch_size: int = 8,
        labels: LabelSet | None = None,
    ) -> None:
        model = unwrap_model(model)
        for attr in ("encode_frame", "decode_from_features"):
            if not hasattr(model, attr):
                raise ValueError(f"DSANetPredictor needs a DSANet-like model with {attr}(), got {type(model).__name__}")
        spatial_size = int(spatial_size)
        divisor = int(getattr(model, "size_divisor", 32))
        if spatial_size < divisor or spatial_size % divisor:
            raise ValueError(f"spatial_size must be a positive multiple of {divisor}, got {spatial_size}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.spatial_size = spatial_size
        self.pipeline = ModelPipeline("cine", spatial_size)
        self.amp = bool(amp)
        self.batch_size = int(batch_size)
        self.in_channels = int(getattr(model, "in_channels", 3))
        self.labels = _fit_labels(labels, model)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", amp: bool = False, batch_size: int = 8
    ) -> DSANetPredictor:
        """Build the predictor from a usseg DSANet checkpoint (configuration and input size come from it).

        Raises:
            CheckpointError: the file is not a usseg checkpoint, does not hold a DSANet, or its weights do not fit.

        Examples::

            >>> predictor = DSANetPredictor.from_checkpoint("best.pt", device="cuda", amp=True)  # doctest: +SKIP
            >>> label = predictor.predict_clip(cine)   # (X, Y, T[, 3]) -> uint8 (X, Y, T)       # doctest: +SKIP
        """
        from usseg_models.errors import CheckpointError
        from usseg_models.networks.checkpoint import load_checkpoint

        model, payload = load_checkpoint(path)
        if payload["network"] != "dsanet":
            raise CheckpointError(
                f"{path} holds a {payload['network']} network; DSANetPredictor needs a dsanet checkpoint"
            )
        labels = checkpoint_labels(payload, path)
        return cls(model, int(payload["spatial_size"]), device=device, amp=amp, batch_size=batch_size, labels=labels)

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _check_frames(self, x: torch.Tensor) -> torch.Tensor:
        s, c = self.spatial_size, self.in_channels
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"preprocessed frames must be (T, {c}, {s}, {s}), got {tuple(x.shape)}")
        if x.shape[0] < 1:
            raise ValueError("a cine needs at least one frame")
        if not torch.isfinite(x).all():
            raise ValueError("frames contain NaN or infinite values")
        return x.to(self.device, torch.float32)

    def _encode(self, frames: torch.Tensor) -> list[list[torch.Tensor]]:
        """Backbone on ``(N, C, S, S)`` → one pyramid (list of four maps) per frame."""
        with self._autocast():
            feats = self.model.encode_frame(frames)
        return [[f[i] for f in feats] for i in range(frames.shape[0])]

    def _decode(self, windows: list[list[int]], cache: dict[int, list[torch.Tensor]]) -> torch.Tensor:
        """Decode the targets of ``windows`` (lists of frame indices, target first) → ``(n, out, S, S)`` float32."""
        per_position = [
            [torch.stack([cache[w[pos]][level] for w in windows]) for level in range(4)] for pos in range(WINDOW)
        ]
        with self._autocast():
            logits = self.model.decode_from_features(*per_position, (self.spatial_size, self.spatial_size))
        return logits.float()

    def _to_tensor_clip(self, frames: Any) -> tuple[torch.Tensor, tuple[int, int] | None]:
        if isinstance(frames, torch.Tensor) and frames.ndim == 4 and frames.shape[1] == self.in_channels:
            return self._check_frames(frames), None  # already preprocessed (T, C, S, S)
        arr = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if arr.ndim not in (3, 4):
            raise ValueError(f"a cine must be (X, Y, T) or (X, Y, T, 3), or preprocessed (T, C, S, S); got {arr.shape}")
        clip = self.pipeline.inputs(arr)
        return self._check_frames(clip), (int(arr.shape[0]), int(arr.shape[1]))

    def _masks(self, logits: torch.Tensor, original_xy: tuple[int, int] | None) -> np.ndarray:
        """``(n, C, S, S)`` logits → uint8 ``(X, Y, n)`` label values (``(S, S, n)`` for preprocessed input)."""
        if logits.shape[1] != self.labels.out_channels:
            raise ValueError(f"the label set {self.labels.describe()} needs {self.labels.out_channels} logit "
                             f"channel(s), the model gives {logits.shape[1]}")
        indices = self.pipeline.inverse(logits.cpu(), original_xy or (self.spatial_size, self.spatial_size))
        return indices if self.labels.is_binary and self.labels.values == (1,) else self.labels.to_values(indices)

    # ------------------------------------------------------------------ clip level
    @torch.inference_mode()
    def predict_logits(self, clip: torch.Tensor) -> torch.Tensor:
        """Preprocessed cine ``(T, C, S, S)`` → target logits ``(T, out_channels, S, S)`` (float32, on device).

        Frames are encoded in batches as the targets advance and evicted once no later window needs them, so
        memory stays bounded for long cines; every frame goes through the backbone exactly once.
        """
        clip = self._check_frames(clip)
        n = clip.shape[0]
        cache: dict[int, list[torch.Tensor]] = {}
        out = []
        for start in range(0, n, self.batch_size):
            targets = range(start, min(n, start + self.batch_size))
            windows = [window_indices(n, t, WINDOW) for t in targets]
            new = sorted({i for w in windows for i in w} - set(cache))
            for frame_idx, pyramid in zip(new, self._encode(clip[new])):
                cache[frame_idx] = pyramid
            out.append(self._decode(windows, cache))
            keep_from = targets[-1] + 1 - (WINDOW - 1)
            for frame_idx in [k for k in cache if k < keep_from]:
                del cache[frame_idx]
        return torch.cat(out)

    @torch.inference_mode()
    def predict_logits_from_features(self, pyramids: list[list[torch.Tensor]],
                                     targets: Sequence[int] | None = None) -> torch.Tensor:
        """Target logits ``(len(targets), out_channels, S, S)`` from cached backbone pyramids (no backbone pass).

        ``pyramids[t]`` is frame ``t``'s :meth:`~usseg_models.networks.nets.dsanet.DSANet.encode_frame` output (as
        cached by :func:`usseg_models.inference.adapt.encode_clip`); gives the same logits as
        :meth:`predict_logits` on the frames those pyramids came from. ``targets`` (default: every frame) selects
        the target frames to decode, in that order.
        """
        n = len(pyramids)
        if n < 1:
            raise ValueError("a cine needs at least one frame")
        cache = dict(enumerate(pyramids))
        windows = [window_indices(n, int(t), WINDOW) for t in (range(n) if targets is None else targets)]
        return torch.cat([self._decode(windows[i : i + self.batch_size], cache)
                          for i in range(0, len(windows), self.batch_size)])

    @torch.inference_mode()
    def predict_clip(self, frames: Any) -> np.ndarray:
        """Segment every frame of a cine.

        Args:
            frames: reader cine ``(X, Y, T)`` or ``(X, Y, T, 3)`` (numpy or torch, any dtype), or an already
                preprocessed ``(T, C, S, S)`` float tensor.

        Returns:
            uint8 label volume ``(X, Y, T)`` of :attr:`labels` values (0/1 for one structure; ``(S, S, T)`` for
            preprocessed input).
        """
        clip, original_xy = self._to_tensor_clip(frames)
        return self._masks(self.predict_logits(clip), original_xy)

    # ------------------------------------------------------------------ streaming
    def init_state(self) -> StreamState:
        """A fresh state for one cine."""
        return StreamState()

    def _frame_tensor(self, state: StreamState, frame: Any) -> torch.Tensor:
        if isinstance(frame, torch.Tensor) and frame.ndim == 3 and frame.shape[0] == self.in_channels:
            if state.original_xy is not None:
                raise ValueError("do not mix reader frames and preprocessed frames in one stream")
            return self._check_frames(frame[None])
        arr = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        if arr.ndim == 2:
            cine = arr[:, :, None]
        elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
            cine = arr[:, :, None, :]
        else:
            raise ValueError(
                f"a frame must be (X, Y), (X, Y, 3) or preprocessed ({self.in_channels}, S, S); got {arr.shape}"
            )
        xy = (int(arr.shape[0]), int(arr.shape[1]))
        if state.num_frames and state.original_xy != xy:
            raise ValueError(f"frame {state.num_frames} is {xy}, earlier frames were {state.original_xy}")
        state.original_xy = xy
        return self._check_frames(self.pipeline.inputs(cine))

    @torch.inference_mode()
    def add_frame(self, state: StreamState, frame: Any) -> int:
        """Add the next frame: encode it once, then compute every target mask that has become final.

        Args:
            state: from :meth:`init_state`.
            frame: reader frame ``(X, Y)`` / ``(X, Y, 3)`` or preprocessed ``(C, S, S)`` tensor.

        Returns:
            the index of the added frame.
        """
        if state.finished:
            raise ValueError("this stream was flushed; start a new one with init_state()")
        x = self._frame_tensor(state, frame)
        idx = state.num_frames
        state.features[idx] = self._encode(x)[0]
        state.frames_encoded += 1
        state.num_frames += 1
        self._advance(state, final=False)
        return idx

    def _advance(self, state: StreamState, final: bool) -> None:
        n = state.num_frames
        windows = []
        t = state.next_target
        while t < n:
            # before the end, a window is final once all its frames exist in any longer cine
            w = window_indices(n if final else max(n, t + WINDOW), t, WINDOW)
            if max(w) >= n:
                break
            windows.append(w)
            t += 1
        for i in range(0, len(windows), self.batch_size):
            chunk = windows[i : i + self.batch_size]
            masks = self._masks(self._decode(chunk, state.features), state.original_xy)
            state.ready.extend((w[0], masks[..., j]) for j, w in enumerate(chunk))
        state.next_target = t
        for frame_idx in [k for k in state.features if k < t - (WINDOW - 1)]:
            del state.features[frame_idx]

    @torch.inference_mode()
    def propagate(self, state: StreamState, flush: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_idx, mask)`` for every mask that became final, in frame order.

        Args:
            state: the stream.
            flush: the cine has ended: compute the remaining targets (short-clip rule) and close the stream.

        Yields:
            ``(frame_idx, mask)`` with ``mask`` uint8 ``(X, Y)`` of label values (``(S, S)`` for preprocessed
            frames).
        """
        if flush and not state.finished:
            state.finished = True
            if state.num_frames:
                self._advance(state, final=True)
            state.features.clear()
        while state.ready:
            yield state.ready.popleft()

    def stream(self, frames: Iterable[Any]) -> Iterator[tuple[int, np.ndarray]]:
        """Convenience generator: add frames from an iterable and yield masks as they become final, then flush."""
        state = self.init_state()
        for frame in frames:
            self.add_frame(state, frame)
            yield from self.propagate(state)
        yield from self.propagate(state, flush=True)


def checkpoint_labels(payload: dict, source: Any = "checkpoint") -> LabelSet | None:
    """The label set a checkpoint stores (``extra["labels"]``; ``None`` for older checkpoints: the predictor's
    default then applies).

    Raises:
        CheckpointError: a malformed stored label set.
    """
    from usseg_models.errors import CheckpointError
    from usseg_models.labels import LabelSetError

    try:
        return labels_from_checkpoint(payload, None)
    except LabelSetError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc


def _fit_labels(labels: LabelSet | None, model: nn.Module) -> LabelSet:
    """``labels`` checked against the model's ``out_channels`` when it has one. Default: one structure (value 1),
    or for a model of ``1 + n >= 3`` channels the values ``1..n`` named ``label_<v>``."""
    channels = getattr(model, "out_channels", None)
    if labels is None:
        several = isinstance(channels, int) and channels >= 3
        labels = LabelSet.from_values(range(1, channels)) if several else LabelSet.binary()
    if not isinstance(labels, LabelSet):
        raise TypeError(f"labels must be a LabelSet, got {type(labels).__name__}")
    if isinstance(channels, int) and channels != labels.out_channels:
        raise ValueError(f"the label set {labels.describe()} needs {labels.out_channels} output channel(s); the model "
                         f"has {channels}")
    return labels
