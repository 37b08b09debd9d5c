"""Image inference for IntraSense-Net and the UNet baseline: reader image in, mask at the original size out.

Inputs and the way back are the one network-input pipeline (:class:`~usseg_models.transforms.pipeline.ModelPipeline`,
kind ``"image"``: ``inputs`` → network → ``inverse``: logits resized bilinearly, foreground = logit > 0).

Examples::

    >>> predictor = ImagePredictor.from_checkpoint("runs/intrasense/best.pt")   # doctest: +SKIP
    >>> mask = predictor.predict(image)          # image (X, Y) or (X, Y, 3) → uint8 (X, Y)   # doctest: +SKIP

Masks hold the label values of :attr:`ImagePredictor.labels` (the checkpoint's label set; 0/1 for one structure).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from usseg_models.inference.video import _fit_labels, checkpoint_labels
from usseg_models.labels import LabelSet
from usseg_models.networks.checkpoint import unwrap_model
from usseg_models.transforms.pipeline import ModelPipeline

__all__ = ["ImagePredictor"]


class ImagePredictor:
    """Batched 2D segmentation with a ``(B, 3, S, S) → (B, C, S, S)`` logit network (``C`` = ``labels.out_channels``).

    Args:
        model: IntraSense-Net, UNet or any network with that contract (wrappers are unwrapped; eval mode).
        spatial_size: square input size ``S`` (the configuration's ``spatial_size``).
        device: torch device.
        amp: bfloat16 autocast (CUDA, or CPUs with bf16 support); logits come back as float32.
        batch_size: images per forward pass in :meth:`predict_many`.
        labels: the structures of the output channels (default :meth:`LabelSet.binary`).

    Raises:
        ValueError: for a non-positive ``spatial_size`` or ``batch_size``, or ``labels`` that do not fit the model.
    """

    def __init__(
        self, model: nn.Module, spatial_size: int, device: str | torch.device = "cpu", amp: bool = False,
        batch_size: int = 8, labels: LabelSet | None = None,
    ) -> None:
        if int(spatial_size) < 1:
            raise ValueError(f"spatial_size must be positive, got {spatial_size}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.model = unwrap_model(model).to(self.device).eval()
        self.spatial_size, self.amp, self.batch_size = int(spatial_size), bool(amp), int(batch_size)
        self.pipeline = ModelPipeline("image", self.spatial_size)
        self.labels = _fit_labels(labels, self.model)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs: Any) -> ImagePredictor:
        """Build the predictor from a usseg checkpoint (network, configuration and input size come from it).

        Raises:
            CheckpointError: not a usseg checkpoint, not an image network (IntraSense-Net / UNet), or weights that
                do not fit.
        """
        from usseg_models.errors import CheckpointError
        from usseg_models.networks.checkpoint import load_checkpoint

        model, payload = load_checkpoint(path)
        if payload["network"] not in ("intrasense", "unet"):
            raise CheckpointError(
                f"{path} holds a {payload['network']} network; ImagePredictor needs intrasense or unet"
            )
        kwargs.setdefault("labels", checkpoint_labels(payload, path))
        return cls(model, int(payload["spatial_size"]), device=device, **kwargs)

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @torch.inference_mode()
    def predict_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``(B, 3, S, S)`` → logits ``(B, 1, S, S)`` float32 on the predictor's device.

        Raises:
            ValueError: when the batch is not 4D or holds NaN/Inf.
        """
        if batch.ndim != 4:
            raise ValueError(f"expected a (B, C, S, S) batch, got shape {tuple(batch.shape)}")
        if not torch.isfinite(batch).all():
            raise ValueError("input batch contains NaN or Inf values")
        with self._autocast():
            out = self.model(batch.to(self.device))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float()

    def preprocess(self, image: Any) -> torch.Tensor:
        """Reader image ``(X, Y)``, ``(X, Y, 1)`` or ``(X, Y, 3)`` → ``(3, S, S)`` (shared preprocessing)."""
        return self.pipeline.inputs(image)

    def predict_many(self, images: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Segment reader images; returns ``(mask uint8 (X, Y) of label values, probability float32 (X, Y))`` per
        image (the probability of any structure)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            logits = self.predict_logits(torch.stack([self.preprocess(im) for im in chunk])).cpu()
            for im, lg in zip(chunk, logits):
                xy = (int(np.shape(im)[0]), int(np.shape(im)[1]))
                mask = self.pipeline.inverse(lg, xy)
                if not (self.labels.is_binary and self.labels.values == (1,)):
                    mask = self.labels.to_values(mask)
                prob = self.pipeline.inverse_probabilities(lg, xy)
                out.append((mask, prob))
        return out

    def predict(self, image: Any) -> np.ndarray:
        """Segment one reader image → uint8 mask ``(X, Y)`` of label values (0/1 for one structure)."""
        return self.predict_many([image])[0][0]
