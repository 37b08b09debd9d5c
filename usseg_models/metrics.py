"""Segmentation metrics shared by DSANet (video) and IntraSense-Net (image).

Every figure is computed **per frame** (per image) and then averaged over frames, as the DSANet paper reports
MAE, IoU and Dice ("Dice per frame averaged", see ``docs/paper-readings.md``, "DSANet: training recipe"). Inputs may
be numpy arrays or torch tensors; frames lie along ``frame_axis`` (default 0, i.e. ``(N, H, W)``; pass
``frame_axis=-1`` for a cine label volume ``(X, Y, T)``). A 2D input is one frame. A singleton channel axis
(``(N, 1, H, W)``) is squeezed.

Binary masks are ``pred > 0.5`` for floating inputs (probabilities) and ``!= 0`` for integer/bool inputs; pass
``threshold=0`` to binarise logits.

Empty-mask convention (stated once, used by every ratio): a ratio whose denominator is zero is **1.0 when both
masks are empty** (nothing to find and nothing found: perfect agreement) and **0.0 otherwise**. Concretely:

- Dice ``2|P∩G| / (|P| + |G|)`` and IoU/Jaccard ``|P∩G| / |P∪G|``: both empty → 1; one empty → 0 (formula).
- precision ``TP / (TP + FP)``: nothing predicted → 1 if the truth is empty too, else 0.
- recall ``TP / (TP + FN)``: empty truth → 1 if nothing was predicted, else 0.
- accuracy ``(TP + TN) / N`` and MAE ``mean |P − G|`` are always defined.

MAE uses the soft prediction when one is given (``prob=``), as saliency-style papers (DSANet's MAE) do; otherwise
the binary mask.

Temporal stability (video): for consecutive frames, ``d_pred[t] = Dice(P_t, P_{t+1})`` and
``d_true[t] = Dice(G_t, G_{t+1})``. The report gives the mean of each, their difference
``mean(d_pred) − mean(d_true)`` (negative = predictions flicker more than the anatomy moves) and
``mean |d_pred − d_true|``.

Examples::

    >>> import numpy as np
    >>> p = np.zeros((2, 4, 4), bool); p[:, :2] = True
    >>> g = np.zeros((2, 4, 4), bool); g[:, :1] = True
    >>> round(dice(p, g), 4)
    0.6667
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "METRIC_NAMES",
    "to_frames",
    "confusion_counts",
    "dice",
    "iou",
    "jaccard",
    "precision",
    "recall",
    "accuracy",
    "mae",
    "per_frame_metrics",
    "segmentation_metrics",
    "temporal_stability",
    "consecutive_dice",
    "per_structure_metrics",
]

METRIC_NAMES = ("mae", "iou", "dice", "precision", "recall", "accuracy", "jaccard")


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def to_frames(x: Any, frame_axis: int | None = 0) -> np.ndarray:
    """Return ``x`` as a numpy array shaped ``(N, H, W)``.

    Args:
        x: numpy array or torch tensor, ``(H, W)``, ``(N, H, W)`` or ``(N, 1, H, W)`` (frames along ``frame_axis``).
        frame_axis: axis holding frames; ``None`` treats the whole array as one frame.

    Raises:
        ValueError: when the array cannot be read as frames of 2D masks.
    """
    arr = _to_numpy(x)
    if arr.ndim == 4 and 1 in arr.shape[1:2]:
        arr = arr[:, 0]
    if frame_axis is None or arr.ndim == 2:
        if arr.ndim != 2:
            raise ValueError(f"expected a 2D mask when frame_axis is None, got shape {arr.shape}")
        return arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected (H, W), (N, H, W) or (N, 1, H, W) masks, got shape {arr.shape}")
    return np.moveaxis(arr, frame_axis, 0)


def _binary(x: np.ndarray, threshold: float | None) -> np.ndarray:
    if x.dtype == bool:
        return x
    if threshold is not None:
        return x > threshold
    return x > 0.5 if np.issubdtype(x.dtype, np.floating) else x != 0


def _pair(pred: Any, target: Any, frame_axis: int | None, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    p = _binary(to_frames(pred, frame_axis), threshold)
    g = _binary(to_frames(target, frame_axis), None)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} must have the same (N, H, W) shape")
    return p, g


def confusion_counts(
    pred: Any, target: Any, frame_axis: int | None = 0, threshold: float | None = None
) -> dict[str, np.ndarray]:
    """Per-frame ``tp``, ``fp``, ``fn``, ``tn`` counts (int64 arrays of length N)."""
    p, g = _pair(pred, target, frame_axis, threshold)
    p = p.reshape(len(p), -1)
    g = g.reshape(len(g), -1)
    tp = np.sum(p & g, axis=1, dtype=np.int64)
    fp = np.sum(p & ~g, axis=1, dtype=np.int64)
    fn = np.sum(~p & g, axis=1, dtype=np.int64)
    tn = np.sum(~p & ~g, axis=1, dtype=np.int64)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _ratio(num: np.ndarray, den: np.ndarray, both_empty: np.ndarray) -> np.ndarray:
    """``num / den`` with the module's empty-mask convention where ``den == 0``."""
    out = np.where(both_empty, 1.0, 0.0).astype(np.float64)
    nz = den > 0
    out[nz] = num[nz] / den[nz]
    return out


def per_frame_metrics(
    pred: Any, target: Any, prob: Any | None = None, frame_axis: int | None = 0, threshold: float | None = None
) -> dict[str, np.ndarray]:
    """All metrics per frame: dict of float64 arrays of length N (keys :data:`METRIC_NAMES`).

    Args:
        pred: predicted masks or probabilities, frames along ``frame_axis``.
        target: ground-truth masks, same shape.
        prob: optional soft prediction in [0, 1] used for MAE (same shape).
        frame_axis: axis of frames (``-1`` for ``(X, Y, T)`` volumes).
        threshold: binarisation threshold for ``pred`` (default 0.5 for floats, ``!= 0`` for integers).
    """
    c = confusion_counts(pred, target, frame_axis, threshold)
    tp, fp, fn, tn = (c[k].astype(np.float64) for k in ("tp", "fp", "fn", "tn"))
    both_empty = (tp + fp + fn) == 0
    total = tp + fp + fn + tn
    out = {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "iou": _ratio(tp, tp + fp + fn, both_empty),
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "accuracy": (tp + tn) / np.maximum(total, 1),
    }
    out["jaccard"] = out["iou"].copy()
    if prob is not None:
        soft = np.clip(to_frames(prob, frame_axis).astype(np.float64), 0.0, 1.0)
        g = _binary(to_frames(target, frame_axis), None).astype(np.float64)
        if soft.shape != g.shape:
            raise ValueError(f"prob {soft.shape} and ground truth {g.shape} must have the same shape")
        out["mae"] = np.abs(soft - g).reshape(len(g), -1).mean(axis=1)
    else:
        out["mae"] = (fp + fn) / np.maximum(total, 1)
    return {k: out[k] for k in METRIC_NAMES}


def _mean(name: str, pred: Any, target: Any, frame_axis: int | None, threshold: float | None) -> float:
    return float(per_frame_metrics(pred, target, None, frame_axis, threshold)[name].mean())


def dice(pred: Any, target: Any, frame_axis: int | None = 0, threshold: float | None = None) -> float:
    """Mean per-frame Dice ``2|P∩G| / (|P| + |G|)`` (both empty → 1)."""
    return _mean("dice", pred, target, frame_axis, threshold)


def iou(pred: Any, target: Any, frame_axis: int | None = 0, threshold: float | None = None) -> float:
    """Mean per-frame IoU ``|P∩G| / |P∪G|`` (both empty → 1)."""
    return _mean("iou", pred, target, frame_axis, threshold)


jaccard = iou


def precision(pred: Any, target: Any, frame_axis: int | None = 0, threshold: float | None = None) -> float:
    """Mean per-frame precision ``TP / (TP + FP)`` (nothing predicted → 1 if truth empty else 0)."""
    return _mean("precision", pred, target, frame_axis, threshold)


def recall(pred: Any, target: Any, frame_axis: int | None = 0, threshold: float | None = None) -> float:
    """Mean per-frame recall (sensitivity) ``TP / (TP + FN)`` (empty truth → 1 if nothing predicted else 0)."""
    return _mean("recall", pred, target, frame_axis, threshold)


def accuracy(pred: Any, target: Any, frame_axis: int | None = 0, threshold: float | None = None) -> float:
    """Mean per-frame pixel accuracy ``(TP + TN) / N``."""
    return _mean("accuracy", pred, target, frame_axis, threshold)


def mae(pred: Any, target: Any, frame_axis: int | None = 0) -> float:
    """Mean per-frame mean absolute error between a soft (or binary) prediction in [0, 1] and the truth."""
    p = to_frames(pred, frame_axis)
    return float(per_frame_metrics(p > 0.5, target, p.astype(np.float64), 0)["mae"].mean())


def segmentation_metrics(
    pred: Any, target: Any, prob: Any | None = None, frame_axis: int | None = 0, threshold: float | None = None
) -> dict[str, float]:
    """Frame-averaged MAE, IoU, Dice, precision, recall, accuracy and Jaccard as a dict of floats."""
    return {k: float(v.mean()) for k, v in per_frame_metrics(pred, target, prob, frame_axis, threshold).items()}


def consecutive_dice(masks: Any, frame_axis: int | None = 0, threshold: float | None = None) -> np.ndarray:
    """Dice between consecutive frames, ``d[t] = Dice(M_t, M_t+1)`` for t < N-1 (both empty → 1).

    The one definition of frame-to-frame agreement: :func:`temporal_stability` reports it for predictions and
    truth, the app's temporal-disagreement score is ``mean(1 − d)``. Fewer than two frames give an empty array.
    """
    m = _binary(to_frames(masks, frame_axis), threshold)
    if len(m) < 2:
        return np.zeros(0, np.float64)
    return per_frame_metrics(m[1:], m[:-1])["dice"]


def temporal_stability(
    pred: Any, target: Any, frame_axis: int | None = 0, threshold: float | None = None
) -> dict[str, float]:
    """Consecutive-frame Dice of predictions vs. that of the ground truth.

    Returns:
        dict with ``pred_consecutive_dice`` (mean over t of Dice(P_t, P_t+1)), ``true_consecutive_dice`` (same for
        G), ``difference`` (pred − true) and ``mean_abs_difference`` (mean over t of |d_pred − d_true|).

    Raises:
        ValueError: with fewer than two frames.
    """
    p, g = _pair(pred, target, frame_axis, threshold)
    if len(p) < 2:
        raise ValueError(f"temporal stability needs at least 2 frames, got {len(p)}")
    d_pred, d_true = consecutive_dice(p), consecutive_dice(g)
    return {
        "pred_consecutive_dice": float(d_pred.mean()),
        "true_consecutive_dice": float(d_true.mean()),
        "difference": float(d_pred.mean() - d_true.mean()),
        "mean_abs_difference": float(np.abs(d_pred - d_true).mean()),
    }


def per_structure_metrics(
    pred: Any, target: Any, values: Any, frame_axis: int | None = 0
) -> dict[str, dict[str, float]]:
    """Metrics of each structure of two label maps, and their mean over structures.

    Each structure ``v`` is scored as the binary pair ``(pred == v, target == v)`` with :func:`segmentation_metrics`
    (per frame, then averaged over frames; the empty-mask convention above). The ``"mean"`` entry is the unweighted
    mean over structures (a structure absent from both maps of a frame counts 1.0 there, as everywhere here).

    Args:
        pred, target: integer label maps of equal shape (label values, not probabilities).
        values: ``{name: label value}`` (a :class:`~usseg_models.labels.LabelSet`'s ``label_names()``) or a
            sequence of values (named by their value).

    Returns:
        ``{name: {metric: value}, ..., "mean": {metric: value}}``.
    """
    named = dict(values) if hasattr(values, "items") else {str(int(v)): int(v) for v in values}
    if not named:
        raise ValueError("per_structure_metrics needs at least one structure")
    p, g = np.asarray(_to_numpy(pred)), np.asarray(_to_numpy(target))
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and target {g.shape} must have the same shape")
    out = {name: segmentation_metrics(p == v, g == v, frame_axis=frame_axis) for name, v in named.items()}
    out["mean"] = {k: float(np.mean([m[k] for m in out.values()])) for k in METRIC_NAMES}
    return out
