"""DSANet evaluation on clips with masks: paper metrics, temporal stability, speckle robustness, overlays.

For every noise setting (no added noise, then each ``L`` of ``speckle``) each clip goes through the shared
network-input pipeline :class:`usseg_models.transforms.pipeline.ModelPipeline` (with ``speckle_L=L``: multiplicative
Gamma speckle on ``[0, 1]`` intensity, independently per frame, before ImageNet normalisation — the paper's
Table II protocol; here the noise is drawn at network resolution, after resizing), then through
:class:`usseg_models.inference.video.DSANetPredictor` (one backbone pass per frame). Masks are compared with the
truth **at the original resolution** (logits resized, then > 0); MAE uses the resized sigmoid probability.
Metrics are per frame, averaged over all frames; temporal stability is per clip, averaged over clips.

**Sparse-frame labels** (:attr:`usseg_models.data.records.ClipRecord.labelled`: EchoNet's ED/ES tracings, keyframes,
the frames a user reviewed): every frame is still segmented (the windows need their neighbours), but only the
labelled frames are scored; the report and ``metrics.json`` say how many frames were scored out of how many.
Temporal stability compares consecutive frames, so it is computed on fully labelled clips only.

**Several structures** (the checkpoint's ``extra["labels"]`` has ``n >= 2``): masks are class indices (argmax of
the ``1 + n`` channels against the truth's label values mapped by the label set); every structure is scored as a
binary pair per frame, the table rows are the mean over structures, a per-structure table follows (``structures``
in ``metrics.json``, ``dice_<name>`` columns in ``per_clip.csv``), MAE is that of the hard masks, and temporal
stability is that of the union of structures.
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
from usseg_models.evaluation.report import VIDEO_COLUMNS, markdown_table, noise_label, structure_section
from usseg_models.metrics import temporal_stability

__all__ = ["evaluate_dsanet", "ClipScores", "score_clips", "dsanet_report"]

logger = logging.getLogger(__name__)


@dataclass
class ClipScores:
    """What :func:`score_clips` measured: ``rows`` ``[(noise label, mean metrics)]``, ``temporal`` ``{noise label:
    stability}``, ``per_clip`` CSV rows, the ``overlays`` to draw, the frame counts, and for several structures
    ``structures`` ``{noise label: {structure: metrics, "mean": metrics}}``."""

    rows: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    temporal: dict[str, dict[str, float]] = field(default_factory=dict)
    per_clip: list[dict[str, Any]] = field(default_factory=list)
    overlays: list[Overlay] = field(default_factory=list)
    n_clips: int = 0
    n_frames: int = 0
    n_frames_total: int = 0
    n_sparse_clips: int = 0
    structures: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def score_clips(predictor, size: int, clips: Sequence[tuple[Any, np.ndarray, np.ndarray]],
                speckle: Sequence[float] = (), seed: int = 0, overlay_clips: int = 2,
                overlay_frames: int = 4, labels=None) -> ClipScores:
    """Metrics of ``predictor`` on ``clips`` (``(record, cine, label)``) for no noise and each speckle ``L``.

    With ``labels`` of several structures the labels are class indices (``load_clip_arrays(..., labels=)``) and
    every structure is scored (module docstring). Only each clip's labelled frames are scored (sparse-frame
    labels); the overlays are the no-noise predictions of ``overlay_frames`` evenly spaced labelled frames of the
    first ``overlay_clips`` clips.
    """
    from usseg_models.transforms.pipeline import postprocess_logits, postprocess_probabilities

    scored = {r.id: r.labelled_frames(label.shape[-1]) for r, _, label in clips}
    out = ClipScores(n_clips=len(clips), n_frames=int(sum(len(v) for v in scored.values())),
                     n_frames_total=int(sum(label.shape[-1] for _, _, label in clips)),
                     n_sparse_clips=sum(1 for r, _, label in clips if len(scored[r.id]) < label.shape[-1]))
    for L, pipeline in noise_settings("cine", size, speckle, seed):
        frames_metrics, stabilities, per_structure = [], [], []
        for k, (rec, cine, label) in enumerate(clips):
            x = torch.as_tensor(pipeline({"image": cine})["image"]).float()
            logits = predictor.predict_logits(x).cpu()
            xy = (int(cine.shape[0]), int(cine.shape[1]))
            pred = postprocess_logits(logits, xy)  # (X, Y, T)
            prob = postprocess_probabilities(logits, xy)  # (X, Y, T)
            idx = scored[rec.id]
            m, per, extra_cols = score_prediction(pred[..., idx], label[..., idx], prob[..., idx], labels,
                                                  frame_axis=-1)
            if per is not None:
                per_structure.append(per)
            frames_metrics.append(m)
            full = len(idx) == label.shape[-1]
            ts = (temporal_stability(pred > 0, label > 0, frame_axis=-1) if full and label.shape[-1] > 1
                  else None)
            if ts is not None:
                stabilities.append(ts)
            out.per_clip.append({"clip": rec.id, "noise": noise_label(L), "frames": len(idx),
                                 "frames_total": int(label.shape[-1]),
                                 **{key: float(v.mean()) for key, v in m.items()},
                                 "temporal_pred": ts["pred_consecutive_dice"] if ts else float("nan"),
                                 "temporal_true": ts["true_consecutive_dice"] if ts else float("nan"),
                                 **extra_cols})
            if L is None and k < overlay_clips:
                picks = np.linspace(0, len(idx) - 1, min(overlay_frames, len(idx))).round().astype(int).tolist()
                for t in sorted({idx[i] for i in picks}):
                    out.overlays.append(Overlay(f"{rec.id.replace('/', '_')}__frame{t:04d}", cine[:, :, t],
                                                label[:, :, t], pred[:, :, t]))
        agg = record_setting(out, noise_label(L), frames_metrics, per_structure)
        if stabilities:
            out.temporal[noise_label(L)] = {key: float(np.mean([s[key] for s in stabilities]))
                                            for key in stabilities[0]}
        logger.info("DSANet %s: Dice %.4f IoU %.4f MAE %.4f", noise_label(L), agg["dice"], agg["iou"], agg["mae"])
    return out


def dsanet_report(scores: ClipScores, source: str, data: str | Path, split: str | None, seed: int,
                  overlay_paths: Sequence[Path]) -> list[str]:
    """The Markdown lines of ``report.md`` (``source``: what was evaluated, one line)."""
    n_sparse = scores.n_sparse_clips
    scope = (f"{scores.n_frames} frames" if n_sparse == 0 else
             f"{scores.n_frames} labelled frames scored of {scores.n_frames_total} segmented ({n_sparse} clips with "
             "sparse-frame labels)")
    return [
        "# DSANet evaluation",
        "",
        f"- checkpoint: {source}",
        f"- data: `{data}`" + (f" (split {split})" if split else "") + f": {scores.n_clips} clips, {scope}",
        "- metrics per labelled frame at the original resolution, averaged over those frames (foreground = "
        "logit > 0); MAE on the sigmoid probability",
        f"- speckle: multiplicative Gamma(L, rate L) on [0, 1] intensity per frame, seed {seed}",
        "",
        "## Speckle robustness (paper Table II layout)",
        "",
        markdown_table(scores.rows, VIDEO_COLUMNS),
        "",
        "## Temporal stability",
        "",
        "Mean consecutive-frame Dice of the predictions vs. the same for the ground truth (difference < 0: the "
        "prediction flickers more than the anatomy moves); fully labelled clips only"
        + (f" ({scores.n_clips - n_sparse} of {scores.n_clips})." if n_sparse else "."),
        "",
        "| setting | predictions | ground truth | difference | mean abs. difference |",
        "|---|---:|---:|---:|---:|",
        *[f"| {k} | {v['pred_consecutive_dice']:.4f} | {v['true_consecutive_dice']:.4f} | {v['difference']:+.4f} "
          f"| {v['mean_abs_difference']:.4f} |" for k, v in scores.temporal.items()],
        "",
        *structure_section(scores.structures, VIDEO_COLUMNS),
        "## Overlays (frame | truth in green | prediction in red)",
        "",
        *[f"![{p.stem}](overlays/{p.name})" for p in overlay_paths],
        "",
    ]


def evaluate_dsanet(
    checkpoint: str | Path,
    data: str | Path,
    out_dir: str | Path,
    speckle: Sequence[float] = (25.0, 20.0),
    split: str | None = None,
    device: str = "auto",
    label_value: int | None = None,
    seed: int = 0,
    overlay_clips: int = 2,
    overlay_frames: int = 4,
    batch_size: int = 8,
    amp: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a DSANet checkpoint on the clips under ``data`` and write a report to ``out_dir``.

    Args:
        checkpoint: usseg DSANet checkpoint (``best.pt``).
        data: folder in any layout of :func:`usseg_models.data.discovery.discover_clips`.
        out_dir: receives ``report.md``, ``metrics.json``, ``per_clip.csv`` and ``overlays/*.png``.
        speckle: numbers of looks ``L`` for the robustness rows (paper: 25 mild, 20 heavy); ``()`` = none.
        split: evaluate only this split folder (e.g. ``"test"``); ``None`` = every clip found.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        label_value: foreground class; ``None`` = the value stored in the checkpoint (else any non-zero). A
            checkpoint of several structures is scored per structure with its stored label set instead.
        seed: seed of the speckle draws (reproducible tables).
        overlay_clips, overlay_frames: how many clips / evenly spaced frames get overlay PNGs (no-noise row).
        batch_size: target frames decoded together.
        amp: bf16 autocast (default: on for CUDA).

    Returns:
        dict with ``rows`` (``{noise_label: metrics}``), ``temporal`` (``{noise_label: stability}``),
        ``report``, ``overlays``, ``n_clips``, ``n_frames`` (labelled frames scored), ``n_frames_total`` (frames
        segmented), ``n_sparse_clips`` (clips with sparse-frame labels), ``labels`` (the label set, ``"1:LV,..."``),
        and ``structures`` (``{noise_label: {structure: metrics, "mean": metrics}}``; empty for one structure).
    """
    from usseg_models.data.datasets import load_clip_arrays
    from usseg_models.data.discovery import discover_clips
    from usseg_models.inference.video import DSANetPredictor

    loaded = load_predictor(checkpoint, ("dsanet",), DSANetPredictor, label_value, device, batch_size, amp)
    clips = [(r, *load_clip_arrays(r, loaded.label_value, loaded.structures))
             for r in discover_clips(data, split=split)]
    scores = score_clips(loaded.predictor, loaded.size, clips, speckle, seed, overlay_clips, overlay_frames,
                         labels=loaded.structures)
    metrics = {"rows": dict(scores.rows), "temporal": scores.temporal, "n_clips": scores.n_clips,
               "n_frames": scores.n_frames, "n_frames_total": scores.n_frames_total,
               "n_sparse_clips": scores.n_sparse_clips, "checkpoint": str(checkpoint),
               "labels": loaded.predictor.labels.describe(), "structures": scores.structures}
    report, csv_path, overlays = write_evaluation(
        out_dir, scores.overlays, lambda paths: dsanet_report(scores, loaded.describe(), data, split, seed, paths),
        "per_clip.csv", scores.per_clip, metrics)
    return {**metrics, "report": report, "csv": csv_path, "overlays": overlays}
