"""Helpers for the reader layout (``docs/DESIGN.md``): ``(X, Y[, T])`` spatial axes, then an optional colour axis."""

from __future__ import annotations

from typing import Any

__all__ = ["spatial_ndim"]


def spatial_ndim(array: Any, meta: dict[str, Any]) -> int:
    """Number of spatial ``(X, Y[, T])`` axes of a reader array, not counting a channel-last colour axis."""
    return array.ndim - (1 if meta.get("original_channel_dim") == -1 else 0)
