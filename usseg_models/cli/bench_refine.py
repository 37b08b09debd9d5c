"""``usseg bench refine``: the product's refinement vs. the learning-free anchors (:mod:`usseg_models.bench.refine`).

Examples::

    usseg bench refine --quick                                  # CI-sized run on one synthetic cine
    usseg bench refine --data ../shared/data/vtus_clip0002 --methods copy,fill,flow --ks 1,3,5,9
    usseg bench refine --data clips/ --pretrained base.pt --placements spaced
"""

from __future__ import annotations

from usseg_models.cli.bench_common import add_synthetic_clip_args, print_bench_result

__all__ = ["add_refine_parser", "run_refine_cli"]


def add_refine_parser(sub):
    """Register ``usseg bench refine`` on the ``bench`` sub-command's subparsers."""
    from usseg_models.bench.refine import METHODS, PLACEMENTS

    p = sub.add_parser("refine", help="Dice of refinement from k corrected frames: product modes against the "
                       "learning-free anchors (copy, Fill between slices, optical flow)")
    p.add_argument("--data", default=None, help="folder of clips with masks (any layout usseg reads); "
                   "default: synthetic cines")
    p.add_argument("--out", default="runs/bench-refine", help="output folder (CSV, summary.md, refine.png, base.pt)")
    p.add_argument("--quick", action="store_true", help="one small synthetic clip, k = 1,3, a one-epoch base "
                   "(under a minute on 2 CPU cores)")
    p.add_argument("--ks", default=None, help="corrected frames per clip, comma-separated (default 1,2,3,5,9; "
                   "quick 1,3)")
    p.add_argument("--placements", default=",".join(PLACEMENTS), help="spaced (frames round((i+0.5)T/k)) and/or "
                   "bunched (k consecutive frames in the middle)")
    p.add_argument("--methods", default=",".join(METHODS), help="product modes (hybrid, propagate, adapt; those "
                   "the installed refinement does not offer are skipped) and anchors (copy, fill, flow)")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--pretrained", default=None, help="usseg DSANet checkpoint as the base model "
                      "(default: the app's bootstrap recipe on the sample studies, cached as OUT/base.pt)")
    base.add_argument("--untrained", action="store_true", help="random weights as the base model")
    p.add_argument("--config", default="small", choices=["small", "paper"], help="DSANet of the bootstrap base")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the bootstrap base (default 20, quick 1)")
    p.add_argument("--base-data", default=None, help="studies the bootstrap base trains on "
                   "(default: the bundled sample-data/studies)")
    p.add_argument("--max-steps", type=int, default=None, help="refinement steps per run (default: the product's; "
                   "quick 3)")
    p.add_argument("--time-budget", type=float, default=None, help="refinement seconds per run (the product's)")
    p.add_argument("--device", default="cpu", help="torch device of the product's modes (cpu, cuda)")
    p.add_argument("--seed", type=int, default=0, help="seed of the base, the refinement and the synthetic clips")
    add_synthetic_clip_args(p, "default 4, quick 1")
    p.set_defaults(func=run_refine_cli)
    return p


def run_refine_cli(args) -> int:
    from usseg_models.bench.refine import run_refine_bench
    from usseg_models.errors import UssegError

    try:
        ks = [int(k) for k in str(args.ks).split(",") if k.strip()] if args.ks else None
    except ValueError:
        raise UssegError(f"--ks {args.ks}: expected comma-separated integers") from None
    result = run_refine_bench(args.out, args.data, args.quick, ks, args.placements, args.methods, args.pretrained,
                              args.untrained, args.config, args.epochs, args.base_data, args.max_steps,
                              args.time_budget, args.device, args.seed, count=args.clips, frames=args.frames,
                              size=args.size)
    return print_bench_result(result)
