"""Train task: fine-tune a usseg model on the datastore's final labels and publish ``model/<name>.pt``.

The task wraps the project's own training functions (:func:`usseg_models.training.train_dsanet`,
:func:`usseg_models.training.train_intrasense`) rather than MONAI Label's ``BasicTrainTask``: DSANet has
three supervised outputs and both models share their preprocessing with inference through
:mod:`usseg_models.transforms.preprocessing`. No MLflow tracking is used (MLflow 3 refuses MONAI Label's
default file store); the history goes to ``model/<name>_train.json`` and ``GET /train/`` shows the status.

Data: the datastore's ``(image, label)`` pairs of this model's kind — cines with ``(X, Y, T)`` labels for
DSANet, 2D images for IntraSense-Net — are linked into a temporary folder in MONAI Label's layout and handed
to the training function. Training starts from the weights in use (``model/<name>.pt`` or the pretrained
file) when they match the configuration.

Data-parallel: with ``"multi_gpu": true`` and more than one device (CUDA GPUs, or ``"nproc": N`` CPU
processes on the gloo backend) the run is launched through ``torch.distributed.run`` (``torchrun``); the
training engine wraps the network in ``DistributedDataParallel``. For several nodes, run
``torchrun --nnodes ... -m monailabel_app.lib.trainers.ddp_run ARGS.json`` on each node.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from monailabel_app.lib.datastore import atomic_copy
from monailabel_app.lib.infers.base import resolve_input_file, spatial_ndim
from monailabel_app.lib.model_store import ModelStore
from usseg_models.errors import UssegError
from usseg_models.io import load_image
from usseg_models.networks.checkpoint import read_checkpoint

__all__ = ["UltrasoundTrainTask", "stage_datastore", "item_kind", "run_training", "json_safe"]

logger = logging.getLogger(__name__)


def item_kind(path: str) -> str | None:
    """``"cine"`` for a multi-frame clip, ``"image"`` for a 2D image, ``None`` when unreadable."""
    try:
        array, meta = load_image(resolve_input_file(path))
    except (UssegError, OSError) as exc:
        logger.warning("skipping %s: %s", path, exc)
        return None
    return "cine" if spatial_ndim(array, meta) == 3 and array.shape[2] > 1 else "image"


def _suffix(path: str) -> str:
    name = os.path.basename(path).lower()
    for ext in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".png", ".jpg", ".jpeg", ".dcm"):
        if name.endswith(ext):
            return ext
    return ".dcm"  # DICOM files from a PACS often have no suffix


def stage_datastore(pairs: list[dict[str, str]], kind: str, folder: str | os.PathLike) -> int:
    """Link the ``(image, label)`` pairs of ``kind`` into ``folder`` in MONAI Label's layout; return the count."""
    folder = Path(folder)
    labels = folder / "labels" / "final"
    labels.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, pair in enumerate(pairs):
        image = resolve_input_file(pair["image"])
        if item_kind(image) != kind:
            continue
        item = f"item_{i:04d}"
        os.symlink(os.path.realpath(image), folder / f"{item}{_suffix(image)}")
        os.symlink(os.path.realpath(pair["label"]), labels / f"{item}{_suffix(pair['label'])}")
        count += 1
    return count


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by ``None`` (HTTP answers must be strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return json_safe(value.item())
    return str(value)


def run_training(network: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call the project's training function for ``network`` with ``kwargs`` (``data``, ``out_dir``, ...)."""
    from usseg_models.training import train_dsanet, train_intrasense

    fn = {"dsanet": train_dsanet, "intrasense": train_intrasense}[network]
    return fn(**kwargs)


class UltrasoundTrainTask(TrainTask):
    """Fine-tune one model on the datastore's final labels and publish the checkpoint atomically.

    Args:
        store: the model's :class:`ModelStore` (its network name, configuration and ``model/`` paths).
        kind: ``"cine"`` or ``"image"``.
        defaults: default request options (``max_epochs``, ``batch_size``, ``lr``, ``val_split``,
            ``multi_gpu``, ``config``); a train request overrides them.
        description: shown by ``GET /info/``.
    """

    def __init__(self, store: ModelStore, kind: str, defaults: dict[str, Any], description: str) -> None:
        super().__init__(description)
        if kind not in ("cine", "image"):
            raise ValueError(f"kind must be 'cine' or 'image', got {kind!r}")
        self.store = store
        self.kind = kind
        self.defaults = dict(defaults)
        self.stats_path = store.model_dir / f"{store.name}_train.json"

    def config(self) -> dict[str, Any]:
        return dict(self.defaults)

    def stats(self) -> dict[str, Any]:
        try:
            return json_safe(json.loads(self.stats_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _options(self, request: dict[str, Any]) -> dict[str, Any]:
        opts = dict(self.defaults)
        opts.update({k: v for k, v in request.items() if k in self.defaults or k in ("nproc", "device", "seed")})
        if opts.get("config", self.store.config) != self.store.config:
            raise ValueError(f"this server runs the {self.store.config!r} configuration, not {opts['config']!r}")
        for key in ("max_epochs", "batch_size"):
            if int(opts[key]) < 1:
                raise ValueError(f"{key} must be >= 1, got {opts[key]}")
        return opts

    def _start_weights(self) -> str | None:
        path = self.store.weights_path()
        if path is None:
            return None
        try:
            payload = read_checkpoint(path)
        except UssegError:
            return None
        ok = payload["network"] == self.store.name and payload["config"] == self.store.config
        return str(path) if ok else None

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        opts = self._options(request)
        start = time.time()
        work = Path(tempfile.mkdtemp(prefix=f"train_{self.store.name}_", dir=self.store.model_dir.parent))
        try:
            count = stage_datastore(datastore.datalist(), self.kind, work / "data")
            if count == 0:
                raise ValueError(f"no labelled {self.kind}s in the datastore to train {self.store.name} on")
            device = opts.get("device") or ("cuda" if self.store.device.type == "cuda" else "cpu")
            kwargs: dict[str, Any] = {
                "data": str(work / "data"),
                "out_dir": str(work / "run"),
                "config": self.store.config,
                "epochs": int(opts["max_epochs"]),
                "batch_size": int(opts["batch_size"]),
                "lr": float(opts["lr"]),
                "device": device,
                "val_fraction": float(opts.get("val_split", 0.2)) if count > 1 else 0.0,
                "pretrained": self._start_weights(),
                "progress": False,
                "seed": int(opts.get("seed", 0)),
            }
            result = self._train(kwargs, opts, work)
            checkpoint = result.get("best_checkpoint") or result.get("last_checkpoint")
            if not checkpoint or not os.path.isfile(checkpoint):
                raise RuntimeError(f"training of {self.store.name} wrote no checkpoint")
            atomic_copy(checkpoint, str(self.store.trained_path))
            stats = {
                "model": self.store.name,
                "config": self.store.config,
                "items": count,
                "epochs": kwargs["epochs"],
                "best_dice": result.get("best_dice"),
                "best_epoch": result.get("best_epoch"),
                "initial_val_dice": result.get("initial_val_dice"),
                "world_size": result.get("world_size", 1),
                "history": result.get("history", []),
                "published": str(self.store.trained_path),
                "published_mtime": self.store.trained_path.stat().st_mtime,
                "total_time": round(time.time() - start, 2),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            stats = json_safe(stats)
            tmp = self.stats_path.with_suffix(".json.part")
            tmp.write_text(json.dumps(stats, indent=2))
            os.replace(tmp, self.stats_path)
            logger.info("%s: trained on %d %ss, published %s", self.store.name, count, self.kind, checkpoint)
            return stats
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _world_size(self, opts: dict[str, Any]) -> int:
        if not opts.get("multi_gpu") or "WORLD_SIZE" in os.environ:
            return 1
        if opts.get("nproc"):
            return int(opts["nproc"])
        return torch.cuda.device_count() if torch.cuda.is_available() else 1

    def _train(self, kwargs: dict[str, Any], opts: dict[str, Any], work: Path) -> dict[str, Any]:
        nproc = self._world_size(opts)
        if nproc <= 1:
            return run_training(self.store.name, kwargs)
        args_path, result_path = work / "ddp_args.json", work / "ddp_result.json"
        args_path.write_text(json.dumps({"network": self.store.name, "kwargs": kwargs, "result": str(result_path)}))
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "monailabel_app.lib.trainers.ddp_run", str(args_path),
        ]
        logger.info("data-parallel training on %d processes: %s", nproc, " ".join(cmd))
        subprocess.run(cmd, check=True)
        return json.loads(result_path.read_text())
