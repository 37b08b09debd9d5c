"""``usseg train dsanet|intrasense``: train a model on a data folder (paper recipes; DDP under ``torchrun``).

Examples::

    usseg train dsanet --data clips/ --config small --epochs 5 --out runs/dsanet
    usseg train intrasense --data busi/ --folds 5 --optimizer rmsprop --out runs/intrasense
    usseg train intrasense --data busi/ --model unet --out runs/unet          # baseline, identical budget
    usseg train dsanet --data VTUS/ --out runs/vtus                            # Train/ + Train_GT/ as shipped
    usseg train intrasense --images ddti/cropped --masks ddti/mask --out runs/ddti   # any folders, same names
    usseg train dsanet --manifest clips.csv --out runs/keyframes               # image,mask[,subject][,split][,frames]
    usseg train intrasense --data camus/ --labels "1:LV,2:MYO,3:LA" --out runs/camus3   # three structures
    usseg train dsanet --manifest clips.csv --labels auto --out runs/auto          # the values found, label_<v>
    torchrun --nproc_per_node 2 -m usseg_models.cli.main train dsanet --data clips/ --device cuda
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser, epochs: int, batch: int) -> None:
    from usseg_models.cli.data_options import add_data_options

    add_data_options(p)
    p.add_argument("--config", default="small", choices=["small", "paper"], help="network configuration")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch", type=int, default=batch, help="batch size per process")
    p.add_argument("--out", default=None, help="output folder (default runs/<model>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--pretrained", default=None, help="usseg checkpoint to fine-tune, or ImageNet backbone weights")
    p.add_argument("--val-fraction", type=float, default=0.2, help="hold-out fraction when no train/val folders")
    p.add_argument("--val-split", default=None, choices=["test"],
                   help="validate on the data's test split folders (e.g. VTUS Test/ + Test_GT/) instead of a hold-out")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--label-value", type=int, default=None, help="foreground class of multi-class masks")
    p.add_argument("--labels", default=None, metavar="V:NAME,...",
                   help="segment several structures, e.g. '1:LV,2:MYO,3:LA' (mask values outside it are an error), "
                        "or 'auto' (the non-zero values in the training masks, named label_<v>); default: one "
                        "structure (--label-value, else any non-zero), or a manifest's '# labels:' line")
    p.add_argument("--subject-regex", default=None,
                   help="regex with one group extracting the subject/study from a file name (for splits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aug-speckle", type=float, default=None, metavar="L",
                   help="also augment with Gamma speckle of L looks (half the samples; off by default)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train DSANet, IntraSense-Net or the UNet baseline")
    sub = parser.add_subparsers(dest="model_kind", metavar="MODEL")
    sub.required = True
    d = sub.add_parser("dsanet", help="DSANet on clips (Adam 1e-4, wd 5e-4, warm-up + cosine, clip ±0.5)")
    _common(d, epochs=14, batch=2)
    d.add_argument("--weight-decay", type=float, default=5e-4)
    d.add_argument("--no-afsa", action="store_true", help="ablation: without AFSA")
    d.add_argument("--no-lgsa", action="store_true", help="ablation: without LGSA")
    d.set_defaults(func=run)
    i = sub.add_parser("intrasense", help="IntraSense-Net (or --model unet) on images (RMSprop 1e-4, wd 1e-8)")
    _common(i, epochs=50, batch=4)
    i.add_argument("--model", default="intrasense", choices=["intrasense", "unet"])
    i.add_argument("--optimizer", default="rmsprop", choices=["rmsprop", "adam"])
    i.add_argument("--weight-decay", type=float, default=1e-8)
    i.add_argument("--folds", type=int, default=1, help="k-fold cross-validation (paper: 5); 1 = one split")
    i.add_argument("--split-by", default="subject", choices=["subject", "image"],
                   help="keep a subject's images together in splits (subject from the file name)")
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usseg_models.cli.data_options import resolve_data
    from usseg_models.training import train_dsanet, train_intrasense
    from usseg_models.training.common import check_label_options

    labels = check_label_options(args.labels, args.label_value)  # a bad --labels: one line, exit 2
    default_out = "runs/dsanet" if args.model_kind == "dsanet" else f"runs/{args.model}"
    args.data = resolve_data(args, "clips" if args.model_kind == "dsanet" else "images", args.out or default_out)

    common = dict(config=args.config, epochs=args.epochs, batch_size=args.batch, device=args.device,
                  lr=args.lr, weight_decay=args.weight_decay, val_fraction=args.val_fraction, val_split=args.val_split,
                  pretrained=args.pretrained, label_value=args.label_value, seed=args.seed,
                  subject_pattern=args.subject_regex, speckle_L=args.aug_speckle,
                  num_workers=args.workers, progress=not args.no_progress, labels=labels)
    if args.model_kind == "dsanet":
        overrides = {k: False for k, flag in (("use_afsa", args.no_afsa), ("use_lgsa", args.no_lgsa)) if flag}
        result = train_dsanet(args.data, args.out or "runs/dsanet", overrides=overrides, **common)
        name = "dsanet"
    else:
        result = train_intrasense(args.data, args.out or f"runs/{args.model}", model=args.model,
                                  optimizer=args.optimizer, folds=args.folds, by_subject=args.split_by == "subject",
                                  **common)
        name = args.model
    if "folds" in result:
        if result["folds"][0]["rank"] == 0:
            for k, r in enumerate(result["folds"]):
                print(f"{name} fold {k}: best validation Dice {r['best_dice']:.4f} (epoch {r['best_epoch']}), "
                      f"{r['best_checkpoint']}")
            print(f"{name} {len(result['folds'])}-fold validation Dice: {result['mean_dice']:.4f} "
                  f"± {result['std_dice']:.4f}")
    elif result["rank"] == 0 and not result.get("data", {}).get("n_val", 1):
        print(f"{name}: trained without validation ({result['data'].get('split')}); best.pt is the epoch of lowest "
              f"training loss ({result['best_epoch']}). --val-split test validates on a test split folder")
        print(f"checkpoints: {result['best_checkpoint']}, {result['last_checkpoint']}; curves: {result['curves']}")
    elif result["rank"] == 0:
        before = result["initial_val_dice"]
        print(f"{name}: best validation Dice {result['best_dice']:.4f} at epoch {result['best_epoch']} "
              f"(before training {float('nan') if before is None else before:.4f})")
        print(f"checkpoints: {result['best_checkpoint']}, {result['last_checkpoint']}; curves: {result['curves']}")
    found = result.get("labels") or (result.get("folds") or [{}])[0].get("labels")
    if found is not None and not found.is_binary and (result.get("rank", 0) == 0):
        print(f"{name}: {found.num_structures} structures {found.describe()} (validation Dice = mean over them)")
    return 0
