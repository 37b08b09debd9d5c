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
    load_predictor,
    noise_settings,
    record_setting,
    score_prediction,
    write_evaluation,
)
from usseg_models.evaluation.report import IMAGE_COLUMNS, markdown_table, noise_label, structure_section

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
    from usseg_models.transforms.pipeline import postprocess_logits, postprocess_probabilities

    out = ImageScores(network=network)
    for L, pipeline in noise_settings("image", size, speckle, seed):
        metrics, per_structure = [], []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            x = torch.stack([torch.as_tensor(pipeline({"image": im})["image"]).float() for _, im, _ in chunk])
            logits = predictor.predict_logits(x).cpu()
            for (rec, image, label), lg in zip(chunk, logits):
                xy = (int(label.shape[0]), int(label.shape[1]))
                pred = postprocess_logits(lg, xy)
                m, per, extra_cols = score_prediction(pred, label, postprocess_probabilities(lg, xy), labels,
                                                      frame_axis=None)
                if per is not None:
                    per_structure.append(per)
                metrics.append(m)
                if L is None:
                    out.per_image.append({"id": rec.id, **{k: float(v[0]) for k, v in m.items()}, **extra_cols})
                    if len(out.overlays) < overlays:
                        out.overlays.append(Overlay(rec.id.replace("/", "_"), image, label, pred))
        agg = record_setting(out, noise_label(L), metrics, per_structure)
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

    loaded = load_predictor(checkpoint, ("intrasense", "unet"), ImagePredictor, label_value, device, batch_size, amp)
    items = [(r, *load_image_arrays(r, loaded.label_value, loaded.structures))
             for r in discover_images(data, split=split)]
    scores = score_images(loaded.predictor, loaded.size, items, loaded.network, speckle, seed, overlays, batch_size,
                          labels=loaded.structures)
    metrics = {"rows": dict(scores.rows), "n_images": len(items), "network": loaded.network,
               "checkpoint": str(checkpoint), "labels": loaded.predictor.labels.describe(),
               "structures": scores.structures}
    report, csv_path, overlay_paths = write_evaluation(
        out_dir, scores.overlays,
        lambda paths: image_report(scores, loaded.describe(), data, split, loaded.label_value, paths),
        "per_image.csv", scores.per_image, metrics)
    return {**metrics, "per_image": scores.per_image, "report": report, "csv": csv_path, "overlays": overlay_paths}
