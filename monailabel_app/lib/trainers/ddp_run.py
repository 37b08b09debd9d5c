"""Entry point of one data-parallel training process (launched by ``torchrun``).

Usage: ``torchrun --nproc_per_node N [--nnodes ...] -m monailabel_app.lib.trainers.ddp_run ARGS.json`` where
``ARGS.json`` holds ``{"network": "dsanet"|"intrasense", "kwargs": {...training function kwargs...},
"result": "path/for/the/result.json"}``. Every rank trains (the engine joins the process group from the
``torchrun`` environment and wraps the model in ``DistributedDataParallel``); rank 0 writes the result.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from monailabel_app.lib.trainers.base import run_training

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m monailabel_app.lib.trainers.ddp_run ARGS.json")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [rank %(process)d] %(levelname)s %(message)s")
    with open(argv[0]) as f:
        spec = json.load(f)
    result = run_training(spec["network"], spec["kwargs"])
    result.pop("model", None)  # the trained module itself: its weights are in the checkpoint
    if int(os.environ.get("RANK", "0")) == 0:
        tmp = spec["result"] + ".part"
        with open(tmp, "w") as f:
            json.dump(result, f, default=str)
        os.replace(tmp, spec["result"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
