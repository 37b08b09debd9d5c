"""``usseg sample-data OUT_DIR``: write synthetic ultrasound studies with ground truth (a MONAI Label datastore).

See :mod:`usseg_models.data.sample_set` for the layout and :mod:`usseg_models.data.synthetic` for the physics.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from usseg_models.errors import UssegError

__all__ = ["add_parser", "run"]

logger = logging.getLogger("usseg.sample_data")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sample-data",
        help="generate synthetic B-mode cines/images with masks",
        description="Simulate B-mode ultrasound cines (US multi-frame DICOM) and images (PNG, DICOM) with "
        "per-frame ground-truth masks, laid out as a MONAI Label local datastore (labels in labels/final).",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--frames", type=int, default=24, help="frames per cine (default 24)")
    p.add_argument("--cines", type=int, default=4, help="number of DICOM cines (default 4)")
    p.add_argument("--images", type=int, default=4, help="number of PNG images (default 4)")
    p.add_argument("--dicom-images", type=int, default=2, help="number of single-frame DICOM images (default 2)")
    p.add_argument("--size", type=int, default=128, help="frame size in pixels, square (default 128)")
    p.add_argument("--geometry", choices=("sector", "linear"), default="sector", help="probe geometry")
    p.add_argument(
        "--unlabeled", type=int, default=1,
        help="withhold the labels of the last N cines (truth goes to OUT_DIR/truth; default 1)",
    )
    p.add_argument(
        "--studies-layout", action="store_true",
        help="accepted for compatibility: the output is always a MONAI Label studies folder",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from usseg_models.data.sample_set import generate_sample_set

    if args.frames < 1 or args.size < 16:
        raise UssegError(f"--frames must be >= 1 and --size >= 16 (got {args.frames} and {args.size})")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise UssegError(f"{args.out_dir} is a file: OUT_DIR must be a folder (new or existing)")
    total = args.cines + args.images + args.dicom_images
    with tqdm(total=max(total, 0), desc="sample-data", unit="item", disable=args.no_progress) as bar:
        try:
            manifest = generate_sample_set(
                args.out_dir, seed=args.seed, frames=args.frames, cines=args.cines, images=args.images,
                dicom_images=args.dicom_images, size=args.size, geometry=args.geometry, unlabeled=args.unlabeled,
                progress=lambda _item: bar.update(1),
            )
        except ValueError as exc:
            raise UssegError(str(exc)) from exc
    logger.info("manifest: %s/manifest.json (%d items)", args.out_dir, len(manifest["items"]))
    return 0
