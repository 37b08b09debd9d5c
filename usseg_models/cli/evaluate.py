"""``usseg evaluate dsanet|intrasense``: metrics report, speckle-robustness table, overlays, per-image CSV.

Examples::

    usseg evaluate dsanet --checkpoint runs/dsanet/best.pt --data clips/ --speckle 25,20 --out eval/dsanet
    usseg evaluate intrasense --checkpoint runs/unet/best.pt --data camus/ --split test --out eval/unet
    usseg evaluate dsanet --checkpoint runs/echo/best.pt --data EchoNet-Dynamic/ --split test   # ED/ES frames only

A checkpoint of several structures (trained with ``--labels``) is scored per structure and on their mean (report.md
tables, ``dice_<name>`` columns in the CSV, ``structures`` in metrics.json); ``--label-value`` is then ignored.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a checkpoint on a data folder with masks")
    sub = parser.add_subparsers(dest="model_kind", metavar="MODEL")
    sub.required = True
    from usseg_models.cli.data_options import add_data_options

    for name, default_speckle, what in (("dsanet", "25,20", "clips"), ("intrasense", "", "images (also UNet)")):
        p = sub.add_parser(name, help=f"evaluate a {name} checkpoint on {what}")
        p.add_argument("--checkpoint", required=True)
        add_data_options(p)
        p.add_argument("--out", default=None, help=f"report folder (default eval/{name})")
        p.add_argument("--speckle", default=default_speckle,
                       help=f"comma-separated speckle looks L for robustness rows (default {default_speckle!r})")
        p.add_argument("--split", default=None, help="evaluate only this split folder (e.g. test)")
        p.add_argument("--device", default="auto")
        p.add_argument("--label-value", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--batch", type=int, default=8)
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usseg_models.cli.data_options import resolve_data
    from usseg_models.evaluation import evaluate_dsanet, evaluate_image_model
    from usseg_models.evaluation.common import parse_speckle

    speckle = parse_speckle(args.speckle)
    out = args.out or f"eval/{args.model_kind}"
    args.data = resolve_data(args, "clips" if args.model_kind == "dsanet" else "images", out)
    kwargs = dict(speckle=speckle, split=args.split, device=args.device, label_value=args.label_value,
                  seed=args.seed, batch_size=args.batch)
    if args.model_kind == "dsanet":
        result = evaluate_dsanet(args.checkpoint, args.data, out, **kwargs)
        cols = ("mae", "iou", "dice")
    else:
        result = evaluate_image_model(args.checkpoint, args.data, out, **kwargs)
        cols = ("dice", "jaccard", "accuracy", "recall", "precision")
    for label, m in result["rows"].items():
        print(f"{label}: " + ", ".join(f"{c} {m[c]:.4f}" for c in cols))
        per = result.get("structures", {}).get(label)
        if per:
            print(f"  Dice per structure ({result['labels']}): "
                  + ", ".join(f"{name} {v['dice']:.4f}" for name, v in per.items()))
    for label, t in result.get("temporal", {}).items():
        print(f"temporal stability ({label}): predictions {t['pred_consecutive_dice']:.4f}, "
              f"truth {t['true_consecutive_dice']:.4f}, difference {t['difference']:+.4f}")
    if result.get("n_sparse_clips"):
        print(f"scored {result['n_frames']} labelled frames of {result['n_frames_total']} "
              f"({result['n_sparse_clips']} clips with sparse-frame labels)")
    print(f"report: {result['report']}")
    return 0
