"""What ``usseg bench loop`` and ``usseg bench refine`` share: the synthetic-cine options and the printed result."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_synthetic_clip_args", "print_bench_result"]


def add_synthetic_clip_args(p, clips_default: str) -> None:
    """Add ``--clips`` (help: "synthetic clips (``clips_default``)"), ``--frames`` and ``--size`` of the synthetic
    cines a bench generates without ``--data``."""
    p.add_argument("--clips", type=int, default=None, help=f"synthetic clips ({clips_default})")
    p.add_argument("--frames", type=int, default=None, help="frames per synthetic clip (default 24, quick 10)")
    p.add_argument("--size", type=int, default=None, help="synthetic frame size in px (default 128, quick 64)")


def print_bench_result(result: dict) -> int:
    """Print a bench's ``summary.md`` and the path of its plot; return 0 (the exit status)."""
    print(Path(result["summary"]).read_text())
    print(f"plot: {result['plot']}")
    return 0
