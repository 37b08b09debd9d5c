"""``usseg predict dsanet|intrasense``: segment files or folders with a trained checkpoint, no server needed.

Examples::

    usseg predict dsanet --checkpoint runs/dsanet/best.pt --input clips/ --output pred/ --overlay
    usseg predict dsanet --checkpoint best.pt --input lung.mp4 --output pred/ --format seg.nrrd --device cuda --bf16
    usseg predict intrasense --checkpoint runs/unet/best.pt --input images/ --output masks/ --format png

Inputs, outputs and overlays: :mod:`usseg_models.inference.files`. A file that cannot be read or segmented is
reported on stderr and skipped; the others continue. ``<output>/predictions.csv`` lists every input with its outputs
or its error. The exit status is the number of failed inputs (at most 100); 0 when all succeeded, 2 for a bad
checkpoint or option (no input processed).
"""

from __future__ import annotations

import argparse
import sys
import warnings

__all__ = ["add_parser", "run", "MAX_EXIT_CODE"]

MAX_EXIT_CODE = 100


def add_parser(subparsers) -> None:
    from usseg_models.inference.files import OUTPUT_FORMATS

    parser = subparsers.add_parser("predict", help="segment files or folders with a trained checkpoint")
    sub = parser.add_subparsers(dest="model_kind", metavar="MODEL")
    sub.required = True
    for name, what in (("dsanet", "cines: DICOM, NIfTI/NRRD volumes, MP4/AVI/MOV videos, folders of frames"),
                       ("intrasense", "images (also the UNet baseline); cines frame by frame")):
        p = sub.add_parser(name, help=f"segment {what}")
        p.add_argument("--checkpoint", required=True, help=f"usseg {name} checkpoint (best.pt)")
        p.add_argument("--input", required=True, help="a file, or a folder searched recursively")
        p.add_argument("--output", required=True, help="output folder (sub-folders of the input are kept)")
        p.add_argument("--format", default="nii.gz", choices=list(OUTPUT_FORMATS),
                       help="label format: nii.gz (default), seg.nrrd (3D Slicer) or png (0/255, one per frame)")
        p.add_argument("--overlay", nargs="?", const="mp4", default=None, choices=["mp4", "gif"],
                       help="also write <name>_overlay.mp4 (or gif) of the clip with the mask outline")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda")
        p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA, or CPUs with bf16 support)")
        p.add_argument("--batch", type=int, default=8, help="frames (or images) per forward pass")
        p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from usseg_models.inference.files import collect_inputs, predict_files
    from usseg_models.io.video_probe import VIDEO_SUFFIXES
    from usseg_models.training.distributed import resolve_device

    device = resolve_device(args.device)
    if args.model_kind == "dsanet":
        from usseg_models.inference.video import DSANetPredictor

        predictor = DSANetPredictor.from_checkpoint(args.checkpoint, device=device, amp=args.bf16,
                                                    batch_size=args.batch)
    else:
        from usseg_models.inference.image import ImagePredictor

        predictor = ImagePredictor.from_checkpoint(args.checkpoint, device=device, amp=args.bf16,
                                                   batch_size=args.batch)
    out = Path(args.output)
    items = collect_inputs(args.input, args.model_kind, exclude=out)
    if any(p.suffix.lower() in VIDEO_SUFFIXES for it in items for p in it.paths):
        warnings.filterwarnings("ignore", message=".*carries no calibration")  # said once here, not per file
        print("usseg predict: note: video files carry no pixel spacing; their labels are in pixel units")

    def progress(seq):
        return tqdm(seq, desc=f"usseg predict {args.model_kind}", unit="input", disable=args.no_progress)

    def report(item, exc):
        tqdm.write(f"usseg predict: FAILED {item.describe()}: {exc}", file=sys.stderr)

    rows = predict_files(predictor, args.model_kind, items, out, fmt=args.format, overlay=args.overlay,
                         progress=progress, on_error=report)
    from usseg_models.evaluation.common import write_csv

    summary = write_csv(out / "predictions.csv", rows)
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"usseg predict {args.model_kind}: {len(rows) - failed} of {len(rows)} inputs segmented into {out}"
          + (f", {failed} failed" if failed else "") + f" (list: {summary})")
    return min(failed, MAX_EXIT_CODE)
