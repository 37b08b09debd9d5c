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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from usseg_models.evaluation.common import load_model_for, mean_metrics, write_csv, write_json
from usseg_models.evaluation.overlays import save_overlay
from usseg_models.evaluation.report import VIDEO_COLUMNS, markdown_table, noise_label
from usseg_models.metrics import per_frame_metrics, temporal_stability

__all__ = ["evaluate_dsanet"]

logger = logging.getLogger(__name__)


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
        label_value: foreground class; ``None`` = the value stored in the checkpoint (else any non-zero).
        seed: seed of the speckle draws (reproducible tables).
        overlay_clips, overlay_frames: how many clips / evenly spaced frames get overlay PNGs (no-noise row).
        batch_size: target frames decoded together.
        amp: bf16 autocast (default: on for CUDA).

    Returns:
        dict with ``rows`` (``{noise_label: metrics}``), ``temporal`` (``{noise_label: stability}``),
        ``report``, ``overlays``, ``n_clips``, ``n_frames`` (labelled frames scored), ``n_frames_total`` (frames
        segmented), ``n_sparse_clips`` (clips with sparse-frame labels).
    """
    from usseg_models.data.datasets import load_clip_arrays
    from usseg_models.data.discovery import discover_clips
    from usseg_models.inference.video import DSANetPredictor
    from usseg_models.training.distributed import resolve_device
    from usseg_models.transforms.pipeline import (
        Augmentation,
        ModelPipeline,
        postprocess_logits,
        postprocess_probabilities,
    )

    model, payload = load_model_for(checkpoint, ("dsanet",))
    size = int(payload["spatial_size"])
    if label_value is None:
        label_value = (payload.get("extra") or {}).get("label_value")
    dev = resolve_device(device)
    predictor = DSANetPredictor(model, size, device=dev, amp=dev.type == "cuda" if amp is None else amp,
                                batch_size=batch_size)
    records = discover_clips(data, split=split)
    out = Path(out_dir)
    clips = [(r, *load_clip_arrays(r, label_value)) for r in records]
    scored = {r.id: r.labelled_frames(label.shape[-1]) for r, _, label in clips}
    settings: list[float | None] = [None, *speckle]
    rows, temporal, per_clip_rows, overlays, overlaid = [], {}, [], [], 0
    for L in settings:
        noise = None if L is None else Augmentation.speckle_only(L)
        pipeline = ModelPipeline("cine", size).transform(noise)
        pipeline.set_random_state(seed)
        frames_metrics, stabilities = [], []
        for rec, cine, label in clips:
            x = torch.as_tensor(pipeline({"image": cine})["image"]).float()
            logits = predictor.predict_logits(x).cpu()
            xy = (int(cine.shape[0]), int(cine.shape[1]))
            pred = postprocess_logits(logits, xy)  # (X, Y, T)
            prob = postprocess_probabilities(logits, xy)  # (X, Y, T)
            idx = scored[rec.id]
            full = len(idx) == label.shape[-1]
            m = per_frame_metrics(pred[..., idx], label[..., idx], prob=prob[..., idx], frame_axis=-1)
            frames_metrics.append(m)
            ts = temporal_stability(pred, label, frame_axis=-1) if full and label.shape[-1] > 1 else None
            if ts is not None:
                stabilities.append(ts)
            per_clip_rows.append({"clip": rec.id, "noise": noise_label(L), "frames": len(idx),
                                  "frames_total": int(label.shape[-1]),
                                  **{k: float(v.mean()) for k, v in m.items()},
                                  "temporal_pred": ts["pred_consecutive_dice"] if ts else float("nan"),
                                  "temporal_true": ts["true_consecutive_dice"] if ts else float("nan")})
            if L is None and overlaid < overlay_clips:
                overlaid += 1
                n = len(idx)
                picks = np.linspace(0, n - 1, min(overlay_frames, n)).round().astype(int).tolist()
                for t in sorted({idx[k] for k in picks}):
                    name = rec.id.replace("/", "_")
                    frame = cine[:, :, t]
                    overlays.append(save_overlay(out / "overlays" / f"{name}__frame{t:04d}.png", frame,
                                                 label[:, :, t], pred[:, :, t]))
        agg = mean_metrics(frames_metrics)
        rows.append((noise_label(L), agg))
        if stabilities:
            temporal[noise_label(L)] = {k: float(np.mean([s[k] for s in stabilities])) for k in stabilities[0]}
        logger.info("DSANet %s: Dice %.4f IoU %.4f MAE %.4f", noise_label(L), agg["dice"], agg["iou"], agg["mae"])
    n_total = int(sum(label.shape[-1] for _, _, label in clips))
    n_frames = int(sum(len(v) for v in scored.values()))
    n_sparse = sum(1 for r, _, label in clips if len(scored[r.id]) < label.shape[-1])
    scope = (f"{n_frames} frames" if n_sparse == 0 else
             f"{n_frames} labelled frames scored of {n_total} segmented ({n_sparse} clips with sparse-frame labels)")
    lines = [
        "# DSANet evaluation",
        "",
        f"- checkpoint: `{checkpoint}` ({payload['network']}/{payload['config']}, input {size} px, "
        f"epoch {(payload.get('extra') or {}).get('epoch', '?')})",
        f"- data: `{data}`" + (f" (split {split})" if split else "") + f": {len(clips)} clips, {scope}",
        "- metrics per labelled frame at the original resolution, averaged over those frames (foreground = "
        "logit > 0); MAE on the sigmoid probability",
        f"- speckle: multiplicative Gamma(L, rate L) on [0, 1] intensity per frame, seed {seed}",
        "",
        "## Speckle robustness (paper Table II layout)",
        "",
        markdown_table(rows, VIDEO_COLUMNS),
        "",
        "## Temporal stability",
        "",
        "Mean consecutive-frame Dice of the predictions vs. the same for the ground truth (difference < 0: the "
        "prediction flickers more than the anatomy moves); fully labelled clips only"
        + (f" ({len(clips) - n_sparse} of {len(clips)})." if n_sparse else "."),
        "",
        "| setting | predictions | ground truth | difference | mean abs. difference |",
        "|---|---:|---:|---:|---:|",
        *[f"| {k} | {v['pred_consecutive_dice']:.4f} | {v['true_consecutive_dice']:.4f} | {v['difference']:+.4f} "
          f"| {v['mean_abs_difference']:.4f} |" for k, v in temporal.items()],
        "",
        "## Overlays (frame | truth in green | prediction in red)",
        "",
        *[f"![{p.stem}](overlays/{p.name})" for p in overlays],
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    report.write_text("\n".join(lines))
    write_csv(out / "per_clip.csv", per_clip_rows)
    result = {"rows": dict(rows), "temporal": temporal, "report": report, "overlays": overlays,
              "n_clips": len(clips), "n_frames": n_frames, "n_frames_total": n_total, "n_sparse_clips": n_sparse,
              "checkpoint": str(checkpoint)}
    write_json(out / "metrics.json", {k: v for k, v in result.items() if k != "overlays"})
    return result
