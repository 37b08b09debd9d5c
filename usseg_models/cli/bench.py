"""``usseg bench dsanet|intrasense``: throughput and peak memory after warm-up (CUDA: synchronised, bf16).

``usseg bench server``: end-to-end seconds through the MONAI Label app (see :mod:`usseg_models.bench.server`).
``usseg bench loop``: the annotation loop's learning curves against a real server (:mod:`usseg_models.bench.loop`).
``usseg bench refine``: refinement from k corrected frames vs. learning-free anchors (:mod:`usseg_models.bench.refine`).

Examples::

    usseg bench dsanet --config paper --device cuda --batch 16 --compile
    usseg bench intrasense --config small --device cpu --iters 2
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="frames/s (DSANet) or images/s (IntraSense-Net, UNet), peak memory")
    sub = parser.add_subparsers(dest="model_kind", metavar="MODEL")
    sub.required = True
    for name in ("dsanet", "intrasense", "unet"):
        p = sub.add_parser(name, help=f"benchmark {name}")
        p.add_argument("--config", default="paper", choices=["paper", "small"])
        p.add_argument("--device", default="auto", help="auto, cpu, cuda")
        p.add_argument("--batch", type=int, default=8 if name == "dsanet" else 32)
        p.add_argument("--iters", type=int, default=10, help="timed iterations")
        p.add_argument("--warmup", type=int, default=3, help="untimed warm-up iterations")
        p.add_argument("--compile", action="store_true", help="torch.compile the model")
        p.add_argument("--bf16", action="store_true", help="bf16 autocast on CPU too (always on for CUDA)")
        p.add_argument("--json", action="store_true", help="print the figures as JSON")
        if name == "dsanet":
            p.add_argument("--frames", type=int, default=16, help="cine length for the clip/streaming figures")
            p.add_argument("--no-stream", action="store_true", help="skip the batch-1 streaming figure")
        p.set_defaults(func=run)
    from usseg_models.bench.server import add_server_parser  # ``usseg bench server`` (the MONAI Label app)

    add_server_parser(sub)
    from usseg_models.cli.bench_loop import add_loop_parser  # ``usseg bench loop`` (the annotation loop's curves)

    add_loop_parser(sub)
    from usseg_models.cli.bench_refine import add_refine_parser  # ``usseg bench refine`` (product vs. anchors)

    add_refine_parser(sub)


def run(args: argparse.Namespace) -> int:
    from usseg_models.bench import bench_dsanet, bench_image_model, format_results

    amp = True if args.bf16 else None
    if args.model_kind == "dsanet":
        info = bench_dsanet(args.config, args.device, args.batch, args.iters, args.warmup, args.frames,
                            args.compile, amp, streaming=not args.no_stream)
    else:
        info = bench_image_model(args.model_kind, args.config, args.device, args.batch, args.iters, args.warmup,
                                 args.compile, amp)
    print(json.dumps(info, indent=2) if args.json else format_results(info))
    return 0
