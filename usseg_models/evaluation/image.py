"""IntraSense-Net / UNet evaluation on images with masks: the paper's table, per-image CSV, overlays.

Each image goes through the shared network-input pipeline :class:`usseg_models.transforms.pipeline.ModelPipeline`
(optionally with Gamma speckle of ``L`` looks for robustness rows) and
:class:`usseg_models.inference.image.ImagePredictor`; masks are compared with the truth at the original
resolution (logits resized, then > 0). Metrics per image, averaged over images (IntraSense-Net paper columns:
Dice, Jaccard, accuracy, recall, precision; MAE added).

Several structures (the checkpoint's label set has ``n >= 2``): scored per structure and averaged over structures,
as in :mod:`usseg_models.evaluation.video` (``structures`` in ``metrics.json``, ``dice_<name>`` in the CSV).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from usseg_models.evaluation.common import (
    Overlay,
    load_model_for,
    mean_metrics,
    several_structures,
    structure_frame_metrics,
    structure_rows,
    write_evaluation,
)
from usseg_models.evaluation.report import IMAGE_COLUMNS, markdown_table, noise_label, structure_section
from usseg_models.metrics import per_frame_metrics

__all__ = ["evaluate_image_model", "ImageScores", "score_images", "image_report"]

logger = logging.getLogger(__name__)


@dataclass
class ImageScores:
    """What :func:`score_images` measured: ``rows`` ``[(noise label, mean metrics)]``, ``per_image`` CSV rows (no
    added noise) and the ``overlays`` to draw."""

    rows: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    overlays: list[Overlay] = field(default_factory=list)
    network: str = ""
    structures: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def score_images(predictor, size: int, items: Sequence[tuple[Any, np.ndarray, np.ndarray]], network: str,
                 speckle: Sequence[float] = (), seed: int = 0, overlays: int = 8, batch_size: int = 8,
                 labels=None) -> ImageScores:
    """Metrics of ``predictor`` on ``items`` (``(record, image, label)``) for no noise and each speckle ``L``; the
    first ``overlays`` images get an overlay (no noise). With ``labels`` of several structures the labels are class
    indices and each structure is scored."""
    from usseg_models.transforms.pipeline import (
        Augmentation,
        ModelPipeline,
        postprocess_logits,
        postprocess_probabilities,
    )

    out = ImageScores(network=network)
    for L in [None, *speckle]:
        noise = None if L is None else Augmentation.speckle_only(L)
        pipeline = ModelPipeline("image", size).transform(noise)
        pipeline.set_random_state(seed)
        metrics, per_structure = [], []
        multi = several_structures(labels)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            x = torch.stack([torch.as_tensor(pipeline({"image": im})["image"]).float() for _, im, _ in chunk])
            logits = predictor.predict_logits(x).cpu()
            for (rec, image, label), lg in zip(chunk, logits):
                xy = (int(label.shape[0]), int(label.shape[1]))
                pred = postprocess_logits(lg, xy)
                extra_cols = {}
                if multi:
                    per = structure_frame_metrics(pred, label, labels, frame_axis=None)
                    per_structure.append(per)
                    m = per["mean"]
                    extra_cols = {f"dice_{name}": float(per[name]["dice"][0]) for name in labels.names}
                else:
                    m = per_frame_metrics(pred, label, prob=postprocess_probabilities(lg, xy), frame_axis=None)
                metrics.append(m)
                if L is None:
                    out.per_image.append({"id": rec.id, **{k: float(v[0]) for k, v in m.items()}, **extra_cols})
                    if len(out.overlays) < overlays:
                        out.overlays.append(Overlay(rec.id.replace("/", "_"), image, label, pred))
        agg = mean_metrics(metrics)
        out.rows.append((noise_label(L), agg))
        if multi:
            out.structures[noise_label(L)] = structure_rows(per_structure)
        logger.info("%s %s: Dice %.4f Jaccard %.4f", network, noise_label(L), agg["dice"], agg["jaccard"])
    return out


def image_report(scores: ImageScores, source: str, data: str | Path, split: str | None, label_value: int | None,
                 overlay_paths: Sequence[Path]) -> list[str]:
    """The Markdown lines of ``report.md`` (``source``: what was evaluated, one line)."""
    dice = np.array([r["dice"] for r in scores.per_image])
    return [
        f"# {scores.network} evaluation",
        "",
        f"- checkpoint: {source}",
        f"- data: `{data}`" + (f" (split {split})" if split else "") + f": {len(scores.per_image)} images"
        + (f", label value {label_value}" if label_value is not None else ""),
        "- metrics per image at the original resolution, averaged over images (foreground = logit > 0)",
        f"- Dice over images: mean {dice.mean():.4f}, std {dice.std():.4f}, median {np.median(dice):.4f}, "
        f"min {dice.min():.4f}",
        "",
        "## Metrics",
        "",
        markdown_table(scores.rows, IMAGE_COLUMNS),
        "",
        "Per-image figures: `per_image.csv`.",
        "",
        *structure_section(scores.structures, IMAGE_COLUMNS),
        "## Overlays (image | truth in green | prediction in red)",
        "",
        *[f"![{p.stem}](overlays/{p.name})" for p in overlay_paths],
        "",
    ]


def evaluate_image_model(
    checkpoint: str | Path,
    data: str | Path,
    out_dir: str | Path,
    speckle: Sequence[float] = (),
    split: str | None = None,
    device: str = "auto",
    label_value: int | None = None,
    seed: int = 0,
    overlays: int = 8,
    batch_size: int = 8,
    amp: bool | None = None,
) -> dict[str, Any]:
    """Evaluate an IntraSense-Net or UNet checkpoint on the images under ``data``.

    Args:
        checkpoint: usseg checkpoint of an ``intrasense`` or ``unet`` network.
        data: folder in any layout of :func:`usseg_models.data.discovery.discover_images`.
        out_dir: receives ``report.md``, ``metrics.json``, ``per_image.csv`` and ``overlays/*.png``.
        speckle: numbers of looks for extra robustness rows (``()`` = only the clean row).
        split: only this split folder (e.g. ``"test"``); ``None`` = every image found.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        label_value: foreground class; ``None`` = the checkpoint's stored value (else any non-zero).
        seed: speckle seed.
        overlays: number of images (first ones, sorted by id) that get an overlay PNG.
        batch_size: images per forward pass.
        amp: bf16 autocast (default: on for CUDA).

    Returns:
        dict with ``rows`` (``{noise_label: metrics}``), ``per_image`` (clean row), ``report``, ``csv``,
        ``overlays``, ``n_images``, ``network``, ``labels`` and ``structures`` (per structure; empty for one).
    """
    from usseg_models.data.datasets import load_image_arrays
    from usseg_models.data.discovery import discover_images
    from usseg_models.inference.image import ImagePredictor
    from usseg_models.inference.video import checkpoint_labels
    from usseg_models.training.distributed import resolve_device

    model, payload = load_model_for(checkpoint, ("intrasense", "unet"))
    size = int(payload["spatial_size"])
    labels = checkpoint_labels(payload, checkpoint)
    multi = several_structures(labels)
    if label_value is None:
        label_value = (payload.get("extra") or {}).get("label_value")
    if multi:
        label_value = None
    dev = resolve_device(device)
    predictor = ImagePredictor(model, size, device=dev, amp=dev.type == "cuda" if amp is None else amp,
                               batch_size=batch_size, labels=labels)
    items = [(r, *load_image_arrays(r, label_value, labels if multi else None))
             for r in discover_images(data, split=split)]
    scores = score_images(predictor, size, items, payload["network"], speckle, seed, overlays, batch_size,
                          labels=labels if multi else None)
    source = (f"`{checkpoint}` ({payload['network']}/{payload['config']}, input {size} px, "
              f"epoch {(payload.get('extra') or {}).get('epoch', '?')})")
    metrics = {"rows": dict(scores.rows), "n_images": len(items), "network": payload["network"],
               "checkpoint": str(checkpoint), "labels": predictor.labels.describe(), "structures": scores.structures}
    report, csv_path, overlay_paths = write_evaluation(
        out_dir, scores.overlays, lambda paths: image_report(scores, source, data, split, label_value, paths),
        "per_image.csv", scores.per_image, metrics)
    return {**metrics, "per_image": scores.per_image, "report": report, "csv": csv_path, "overlays": overlay_paths}
