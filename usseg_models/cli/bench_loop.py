"""``usseg bench loop``: the annotation loop's learning curves against a real server (:mod:`usseg_models.bench.loop`).

Examples::

    usseg bench loop --quick                                   # CI-sized run on synthetic cines
    usseg bench loop --data vtus_clip0002/ --pretrained base.pt --no-labelling --ks 0,1,3,5,9
"""

from __future__ import annotations

from usseg_models.cli.bench_common import add_synthetic_clip_args, print_bench_result

__all__ = ["add_loop_parser", "run_loop_cli"]


def add_loop_parser(sub):
    """Register ``usseg bench loop`` on the ``bench`` sub-command's subparsers."""
    p = sub.add_parser("loop", help="learning curves of the annotation loop against a real server (refine, label)")
    p.add_argument("--data", default=None, help="folder of clips with masks (any layout usseg reads); "
                   "default: synthetic cines")
    p.add_argument("--out", default="runs/bench-loop", help="output folder (CSV, summary.md, loop.png)")
    p.add_argument("--quick", action="store_true", help="tiny run for CI (under a minute on 2 CPU cores)")
    p.add_argument("--config", default="small", choices=["small", "paper"])
    p.add_argument("--pretrained", default=None, help="usseg DSANet checkpoint the server starts from")
    p.add_argument("--ks", default="0,1,3,5", help="corrected frames per clip for the refinement curve")
    p.add_argument("--max-steps", type=int, default=None, help="refinement steps per request (server default)")
    p.add_argument("--time-budget", type=float, default=None, help="refinement seconds per request")
    p.add_argument("--no-labelling", action="store_true", help="only the refinement curve")
    p.add_argument("--heldout", type=int, default=2, help="clips held out for scoring (the rest are labelled)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per auto-retrain (default 10, quick 1)")
    p.add_argument("--device", default=None, help="server device (cpu, cuda)")
    add_synthetic_clip_args(p, "default 8, quick 4")
    p.set_defaults(func=run_loop_cli)
    return p


def run_loop_cli(args) -> int:
    ks = [int(k) for k in str(args.ks).split(",") if k.strip()]
    from usseg_models.bench.loop import run_loop_bench

    result = run_loop_bench(args.out, args.data, args.quick, args.config, args.pretrained, ks, args.max_steps,
                            args.time_budget, not args.no_labelling, args.heldout, args.epochs, args.device,
                            frames=args.frames, size=args.size, count=args.clips)
    return print_bench_result(result)
