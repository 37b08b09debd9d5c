"""Markdown tables for evaluation reports (metric columns in the papers' order)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["VIDEO_COLUMNS", "IMAGE_COLUMNS", "markdown_table", "noise_label", "structure_section"]

# DSANet paper order (MAE, IoU, Dice) then the extra figures; IntraSense-Net paper order (Dice, Jaccard, ...).
VIDEO_COLUMNS = ("mae", "iou", "dice", "precision", "recall", "accuracy")
IMAGE_COLUMNS = ("dice", "jaccard", "accuracy", "recall", "precision", "mae")
_TITLES = {"mae": "MAE ↓", "iou": "IoU", "dice": "Dice", "precision": "Precision", "recall": "Recall",
           "accuracy": "Accuracy", "jaccard": "Jaccard"}


def noise_label(L: float | None) -> str:
    """Row label of the speckle-robustness table (paper Table II wording)."""
    if L is None:
        return "no added noise"
    return f"speckle L={L:g}" + (" (mild)" if L == 25 else " (heavy)" if L == 20 else "")


def markdown_table(rows: Sequence[tuple[str, Mapping[str, float]]], columns: Sequence[str],
                   first: str = "setting", digits: int = 4) -> str:
    """A markdown table: one row per ``(label, metrics)``; ``columns`` pick and order the metrics."""
    head = f"| {first} | " + " | ".join(_TITLES.get(c, c) for c in columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    body = [f"| {label} | " + " | ".join(f"{m[c]:.{digits}f}" for c in columns) + " |" for label, m in rows]
    return "\n".join([head, sep, *body])


def structure_section(structures: Mapping[str, Mapping[str, Mapping[str, float]]], columns: Sequence[str]
                      ) -> list[str]:
    """Markdown lines of the per-structure tables (one per noise setting; rows = structures, then their mean);
    no lines for a one-structure model (``structures`` empty)."""
    if not structures:
        return []
    lines = ["## Per structure", "",
             "Each structure scored as its own binary mask per frame/image; `mean` = unweighted mean over structures "
             "(the first table's rows).", ""]
    for setting, rows in structures.items():
        lines += [f"### {setting}", "", markdown_table(list(rows.items()), columns, first="structure"), ""]
    return lines
