"""Pieces shared by video and image evaluation: checkpoint loading, aggregation, and the writer of every output.

An evaluation is three steps, each its own function: **scoring** (metrics per frame/image and per noise setting:
``score_clips`` / ``score_images``), the **report** (Markdown tables from the scores: ``dsanet_report`` /
``image_report``) and **writing** (:func:`write_evaluation`: overlay PNGs, ``report.md``, the per-item CSV and
``metrics.json``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from usseg_models.errors import CheckpointError
from usseg_models.metrics import METRIC_NAMES, per_frame_metrics

__all__ = [
    "load_model_for",
    "mean_metrics",
    "write_csv",
    "write_json",
    "parse_speckle",
    "Overlay",
    "write_evaluation",
    "structure_frame_metrics",
    "structure_rows",
    "several_structures",
]


def load_model_for(checkpoint: str | Path, allowed: Sequence[str]):
    """Load a checkpoint and check it holds one of the ``allowed`` networks. Returns ``(model, payload)``."""
    from usseg_models.networks.checkpoint import load_checkpoint

    model, payload = load_checkpoint(checkpoint)
    if payload["network"] not in allowed:
        raise CheckpointError(
            f"{checkpoint} holds a {payload['network']} network; this evaluation needs one of {list(allowed)}"
        )
    return model, payload


def mean_metrics(per_frame: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Average per-frame metric arrays over all frames of all items (the papers' "per frame, averaged")."""
    return {k: float(np.concatenate([np.atleast_1d(p[k]) for p in per_frame]).mean()) for k in METRIC_NAMES}


def several_structures(labels: Any) -> bool:
    """Whether a checkpoint's label set has several structures (then scoring is per structure)."""
    return labels is not None and not labels.is_binary


def structure_frame_metrics(pred: np.ndarray, truth: np.ndarray, labels: Any, frame_axis: int | None
                            ) -> dict[str, dict[str, np.ndarray]]:
    """Per-frame metrics of each structure of class-index maps ``pred``/``truth`` (class ``k`` = the ``k``-th
    structure of ``labels``), and ``"mean"``: per frame, the unweighted mean over structures (MAE from the hard
    masks; a structure absent from both scores 1.0, the metrics' empty-mask convention)."""
    out = {name: per_frame_metrics(pred == k, truth == k, frame_axis=frame_axis)
           for k, name in enumerate(labels.names, start=1)}
    out["mean"] = {key: np.mean([out[n][key] for n in labels.names], axis=0) for key in METRIC_NAMES}
    return out


def structure_rows(per_item: Sequence[Mapping[str, Mapping[str, np.ndarray]]]) -> dict[str, dict[str, float]]:
    """``{structure: mean metrics over every frame/image}`` from :func:`structure_frame_metrics` results."""
    names = list(per_item[0]) if per_item else []
    return {name: mean_metrics([item[name] for item in per_item]) for name in names}


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict rows (same keys) as CSV; floats with 6 decimals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in r.items()})
    return path


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str))
    return path


def parse_speckle(text: str | Sequence[float] | None) -> tuple[float, ...]:
    """``"25,20"`` → ``(25.0, 20.0)``; empty/``None``/``"none"`` → ``()``.

    Raises:
        ValueError: for a non-number or a non-positive number of looks.
    """
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        item = str(item).strip()
        if not item or item.lower() == "none":
            continue
        try:
            value = float(item)
        except ValueError as exc:
            raise ValueError(f"speckle looks must be numbers like 25,20; got {item!r}") from exc
        if value <= 0:
            raise ValueError(f"speckle looks L must be > 0, got {value}")
        out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class Overlay:
    """One overlay figure to write: ``overlays/<name>.png`` of a 2D ``image`` with its ``truth`` and ``pred``."""

    name: str
    image: np.ndarray
    truth: np.ndarray
    pred: np.ndarray


def write_evaluation(out_dir: str | Path, overlays: Sequence[Overlay], report: Callable[[list[Path]], list[str]],
                     csv_name: str, csv_rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]
                     ) -> tuple[Path, Path, list[Path]]:
    """Write an evaluation's outputs under ``out_dir``; returns ``(report.md, the CSV, overlay PNGs)``.

    ``report(overlay paths)`` gives the Markdown lines (it links the overlays); ``metrics`` goes to
    ``metrics.json`` with the paths of the report and the CSV added.
    """
    from usseg_models.evaluation.overlays import save_overlay

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [save_overlay(out / "overlays" / f"{o.name}.png", o.image, o.truth, o.pred) for o in overlays]
    report_path = out / "report.md"
    report_path.write_text("\n".join(report(paths)))
    csv_path = write_csv(out / csv_name, csv_rows)
    write_json(out / "metrics.json", {**metrics, "report": report_path, "csv": csv_path})
    return report_path, csv_path, paths
