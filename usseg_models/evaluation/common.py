"""Pieces shared by video and image evaluation: checkpoint loading, aggregation, and the writer of every output.

An evaluation is three steps, each its own function: **scoring** (metrics per frame/image and per noise setting:
``score_clips`` / ``score_images``), the **report** (Markdown tables from the scores: ``dsanet_report`` /
``image_report``) and **writing** (:func:`write_evaluation`: overlay PNGs, ``report.md``, the per-item CSV and
``metrics.json``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from usseg_models.errors import CheckpointError
from usseg_models.metrics import METRIC_NAMES, per_frame_metrics

__all__ = [
    "load_model_for",
    "LoadedPredictor",
    "load_predictor",
    "noise_settings",
    "score_prediction",
    "record_setting",
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


@dataclass(frozen=True)
class LoadedPredictor:
    """A checkpoint loaded for evaluation (:func:`load_predictor`): its ``predictor``, ``payload`` and network input
    ``size``, and how the truth masks are read: ``structures`` (the label set when it has several structures, each
    scored; else ``None``) and ``label_value`` (the foreground class of one structure; ``None`` = any non-zero)."""

    checkpoint: str | Path
    predictor: Any
    payload: dict[str, Any]
    size: int
    structures: Any
    label_value: int | None

    @property
    def network(self) -> str:
        """The checkpoint's network name (``"dsanet"``, ``"intrasense"``, ``"unet"``)."""
        return self.payload["network"]

    def describe(self) -> str:
        """What was evaluated, one line for a report: path, network/configuration, input size and epoch."""
        return (f"`{self.checkpoint}` ({self.payload['network']}/{self.payload['config']}, input {self.size} px, "
                f"epoch {(self.payload.get('extra') or {}).get('epoch', '?')})")


def load_predictor(checkpoint: str | Path, allowed: Sequence[str], make_predictor: Callable[..., Any],
                   label_value: int | None = None, device: str = "auto", batch_size: int = 8,
                   amp: bool | None = None) -> LoadedPredictor:
    """Load a checkpoint of one of the ``allowed`` networks and wrap it for evaluation.

    Args:
        checkpoint: usseg checkpoint.
        allowed: the network names this evaluation accepts.
        make_predictor: ``(model, size, device=, amp=, batch_size=, labels=) -> predictor`` (e.g.
            :class:`usseg_models.inference.image.ImagePredictor`).
        label_value: foreground class; ``None`` = the checkpoint's stored value (else any non-zero). A checkpoint
            of several structures is scored per structure with its stored label set instead.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: the predictor's batch size.
        amp: bf16 autocast (default: on for CUDA).

    Raises:
        CheckpointError: an unreadable checkpoint, another network, or a malformed stored label set.
    """
    from usseg_models.inference.video import checkpoint_labels
    from usseg_models.training.distributed import resolve_device

    model, payload = load_model_for(checkpoint, allowed)
    size = int(payload["spatial_size"])
    labels = checkpoint_labels(payload, checkpoint)
    multi = several_structures(labels)
    if label_value is None:
        label_value = (payload.get("extra") or {}).get("label_value")
    if multi:
        label_value = None
    dev = resolve_device(device)
    predictor = make_predictor(model, size, device=dev, amp=dev.type == "cuda" if amp is None else amp,
                               batch_size=batch_size, labels=labels)
    return LoadedPredictor(checkpoint, predictor, payload, size, labels if multi else None, label_value)


def noise_settings(kind: str, size: int, speckle: Sequence[float], seed: int) -> Iterator[tuple[float | None, Any]]:
    """``(L, pipeline)`` for no added noise (``L = None``), then for each speckle ``L``: the network-input pipeline
    (:class:`usseg_models.transforms.pipeline.ModelPipeline` of ``kind``, ``"image"`` or ``"cine"``) with Gamma
    speckle of ``L`` looks, its random state set to ``seed`` (reproducible tables)."""
    from usseg_models.transforms.pipeline import Augmentation, ModelPipeline

    for L in [None, *speckle]:
        noise = None if L is None else Augmentation.speckle_only(L)
        pipeline = ModelPipeline(kind, size).transform(noise)
        pipeline.set_random_state(seed)
        yield L, pipeline


def score_prediction(pred: np.ndarray, truth: np.ndarray, prob: np.ndarray, labels: Any, frame_axis: int | None
                     ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]] | None, dict[str, float]]:
    """Per-frame metrics of one prediction against its truth, returned as ``(metrics, per_structure, columns)``.

    With ``labels`` of several structures (class-index maps): ``metrics`` is the mean over structures,
    ``per_structure`` the :func:`structure_frame_metrics` result and ``columns`` ``{"dice_<name>": Dice averaged
    over the frames}``; otherwise the binary metrics (MAE on the probability ``prob``), ``None`` and ``{}``.
    """
    if several_structures(labels):
        per = structure_frame_metrics(pred, truth, labels, frame_axis=frame_axis)
        columns = {f"dice_{name}": float(per[name]["dice"].mean()) for name in labels.names}
        return per["mean"], per, columns
    return per_frame_metrics(pred, truth, prob=prob, frame_axis=frame_axis), None, {}


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


def record_setting(scores: Any, setting: str, per_item: Sequence[Mapping[str, np.ndarray]],
                   per_structure: Sequence[Mapping[str, Mapping[str, np.ndarray]]]) -> dict[str, float]:
    """Add one noise setting to ``scores`` (an ``ImageScores`` or ``ClipScores``): the row ``(setting, mean
    metrics of per_item)`` and, for several structures (``per_structure`` from :func:`score_prediction`),
    ``structures[setting]``. Returns the mean metrics."""
    agg = mean_metrics(per_item)
    scores.rows.append((setting, agg))
    if per_structure:
        scores.structures[setting] = structure_rows(per_structure)
    return agg


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
