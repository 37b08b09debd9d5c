"""Train task: fine-tune a usseg model on the datastore's final labels; publish it only when it is better.

The task wraps the project's own training functions (:func:`usseg_models.training.train_dsanet`,
:func:`usseg_models.training.train_intrasense`) rather than MONAI Label's ``BasicTrainTask``: DSANet has
three supervised outputs and both models share their preprocessing with inference through
:mod:`usseg_models.transforms.pipeline`. No MLflow tracking is used (MLflow 3 refuses MONAI Label's
default file store); the history goes to ``model/<name>_train.json`` and ``GET /train/`` shows the status.

A run, in order:

1. options checked (:mod:`.options`; the server also checks them when the request arrives and answers 422);
2. the datastore's labelled studies of this model's kind become records directly (:mod:`.records`); a cine
   label's ``reviewed_frames`` restricts supervision to those frames;
3. each study is on the train or validation side of the datastore's **fixed** split (:mod:`.splits`);
4. training from the weights in use (``model/<name>.pt`` or the pretrained file) when they match (network,
   configuration and label set);
5. the candidate and the live model are scored on the same validation studies in this job (Dice; with several
   structures the mean over the structures of each one's Dice); the candidate is published only when it is at
   least as good (:mod:`.publish`), else kept as a candidate with the reason;
6. ``{"rollback": true}`` instead puts back the previously published model.

Several structures (``--conf labels``): the masks become class indices of the label set (a value outside it fails
the run naming the file), the network has ``1 + n`` output channels and the checkpoint records the set
(``extra["labels"]``); ``<name>`` in the file names is the store's stem (:mod:`monailabel_app.lib.label_config`).
One structure trains exactly as before (masks binarised, one output channel).

Intermediate files live in ``model/.work/train_<name>_<pid>/`` (removed at the end; stale ones from a killed
run are removed when the server starts).

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
import time
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from monailabel_app.lib.model_store import ModelStore
from monailabel_app.lib.trainers.options import DEFAULT_MIN_VAL_FRAMES, validate_train_options
from monailabel_app.lib.trainers.publish import ModelHistory, should_publish
from monailabel_app.lib.trainers.records import datastore_records
from monailabel_app.lib.trainers.splits import SPLITS_FILE, FixedSplit
from usseg_models.data.records import ClipRecord, ImageRecord
from usseg_models.errors import UssegError
from usseg_models.labels import LabelSet
from usseg_models.networks.checkpoint import load_checkpoint, read_checkpoint

__all__ = ["UltrasoundTrainTask", "run_training", "chosen_checkpoint", "json_safe", "WORK_DIR", "clean_stale_work"]

logger = logging.getLogger(__name__)

WORK_DIR = ".work"


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


def clean_stale_work(model_dir: str | os.PathLike) -> list[str]:
    """Remove ``model/.work/*`` folders left by killed training runs (call when no training runs)."""
    root = Path(model_dir) / WORK_DIR
    removed = []
    if root.is_dir():
        for folder in root.iterdir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        logger.info("removed stale training folders: %s", removed)
    return removed


def _record_to_json(record: ClipRecord | ImageRecord) -> dict[str, Any]:
    if isinstance(record, ClipRecord):
        return {"kind": "cine", "id": record.id, "image": str(record.image), "label": str(record.label),
                "subject": record.subject, "labelled": list(record.labelled) if record.labelled is not None else None}
    return {"kind": "image", "id": record.id, "image": str(record.image), "label": [str(p) for p in record.label],
            "subject": record.subject}


def _record_from_json(d: dict[str, Any]) -> ClipRecord | ImageRecord:
    if d["kind"] == "cine":
        labelled = tuple(d["labelled"]) if d.get("labelled") is not None else None
        return ClipRecord(d["id"], Path(d["image"]), Path(d["label"]), d["subject"], labelled=labelled)
    return ImageRecord(d["id"], Path(d["image"]), tuple(Path(p) for p in d["label"]), d["subject"])


def _datasets(network: str, config: str, records: list, augment: bool, seed: int, labels: LabelSet | None = None):
    """Training or validation dataset of ``records``; ``labels`` (several structures) turns masks into class
    indices, ``None`` keeps the one-structure 0/1 masks."""
    from usseg_models.data.datasets import ClipWindowDataset, ImageSegDataset
    from usseg_models.networks.factory import network_spatial_size

    size = network_spatial_size(network, config)
    extra = {} if labels is None else {"labels": labels}
    if network == "dsanet":
        return ClipWindowDataset(records, size, augment=augment, seed=seed, **extra)
    return ImageSegDataset(records, size, augment=augment, seed=seed, **extra)


def _training_labels(labels: LabelSet) -> LabelSet | None:
    """What the datasets and the training function get: the set for several structures, ``None`` for one (the
    one-structure path binarises masks exactly as before label sets)."""
    return None if labels.is_binary else labels


def chosen_checkpoint(result: dict[str, Any], val_frames: int, min_val_frames: int) -> tuple[str, str | None]:
    """Which checkpoint of a training ``result`` becomes the candidate: ``("best", path)`` or ``("last", path)``.

    The epoch of the best validation Dice is kept only when the validation set has at least ``min_val_frames``
    labelled frames (the same bar as a publish decision, :func:`~monailabel_app.lib.trainers.publish.should_publish`).
    On fewer, picking an epoch by validation Dice is noise: on the sample studies (one validation image) the best
    epoch of IntraSense-Net's first training was epoch 56-57 of 150, which missed the small lesion of a *training*
    image (Dice 0.0-0.19; the last epoch: 0.86-0.89), so the last epoch is kept instead.
    """
    best, last = result.get("best_checkpoint"), result.get("last_checkpoint")
    if val_frames >= min_val_frames and best:
        return "best", best
    if last:
        if val_frames:
            logger.info("%d validation frames (< min_val_frames %d): the last epoch is kept, not the best-scoring one",
                        val_frames, min_val_frames)
        return "last", last
    return "best", best


def run_training(network: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call the project's training function for ``network`` with ``kwargs`` (``data``, ``out_dir``, ...).

    ``kwargs["records"] = {"train": [...], "val": [...]}`` (JSON records, as written for data-parallel runs)
    is turned into datasets and passed as ``data``; ``kwargs["labels"]`` (a :meth:`LabelSet.to_json` list, JSON
    for the same reason) is passed on as a :class:`LabelSet`.
    """
    from usseg_models.training import train_dsanet, train_intrasense

    kwargs = dict(kwargs)
    labels = LabelSet.from_json(kwargs["labels"]) if kwargs.get("labels") is not None else None
    if labels is not None:
        kwargs["labels"] = labels
    else:
        kwargs.pop("labels", None)
    spec = kwargs.pop("records", None)
    if spec is not None:
        train = [_record_from_json(r) for r in spec["train"]]
        val = [_record_from_json(r) for r in spec["val"]]
        seed = int(kwargs.get("seed", 0))
        kwargs["data"] = (_datasets(network, kwargs["config"], train, True, seed, labels),
                          _datasets(network, kwargs["config"], val, False, seed, labels) if val else None)
    fn = {"dsanet": train_dsanet, "intrasense": train_intrasense}[network]
    return fn(**kwargs)


def score_model(network: str, model: torch.nn.Module, dataset, device: str) -> float:
    """Validation Dice of ``model`` on ``dataset`` (the training engine's own score; with several structures the
    mean over the structures)."""
    from usseg_models.training.dsanet import dsanet_predict
    from usseg_models.training.engine import validation_dice
    from usseg_models.training.image import image_predict

    predict = dsanet_predict if network == "dsanet" else image_predict
    return validation_dice(model, dataset, predict, device)


def score_structures(network: str, model: torch.nn.Module, dataset, device: str, labels: LabelSet) -> dict[str, float]:
    """Validation Dice of each structure of ``labels`` (for the training record; the gate uses :func:`score_model`,
    their mean)."""
    from usseg_models.training.dsanet import dsanet_predict
    from usseg_models.training.engine import validation_dice_by_structure
    from usseg_models.training.image import image_predict

    predict = dsanet_predict if network == "dsanet" else image_predict
    return dict(zip(labels.names, validation_dice_by_structure(model, dataset, predict, device)))


class UltrasoundTrainTask(TrainTask):
    """Fine-tune one model on the datastore's final labels; publish only when better (see the module docstring).

    Args:
        store: the model's :class:`ModelStore` (its network name, configuration and ``model/`` paths).
        kind: ``"cine"`` or ``"image"``.
        defaults: default request options (``max_epochs``, ``batch_size``, ``lr``, ``val_split``,
            ``multi_gpu``, ``config``); a train request overrides them (checked by :mod:`.options`).
        description: shown by ``GET /info/``.
    """

    def __init__(self, store: ModelStore, kind: str, defaults: dict[str, Any], description: str) -> None:
        super().__init__(description)
        if kind not in ("cine", "image"):
            raise ValueError(f"kind must be 'cine' or 'image', got {kind!r}")
        self.store = store
        self.kind = kind
        self.defaults = dict(defaults)
        self.stats_path = store.model_dir / f"{store.stem}_train.json"
        self.history = ModelHistory(store.model_dir, store.stem, store.trained_path)
        self.labels = store.labels

    def config(self) -> dict[str, Any]:
        return dict(self.defaults)

    def stats(self) -> dict[str, Any]:
        try:
            return json_safe(json.loads(self.stats_path.read_text()))
        except (OSError, ValueError):
            return {}

    def options(self, request: dict[str, Any]) -> dict[str, Any]:
        """The run's options: defaults overridden by ``request``, checked (raises ``TrainOptionError``)."""
        return validate_train_options(request, self.defaults, self.store.config)

    def _start_weights(self) -> str | None:
        path = self.store.weights_path()
        if path is None:
            return None
        try:
            payload = read_checkpoint(path)
        except UssegError:
            return None
        ok = payload["network"] == self.store.name and payload["config"] == self.store.config
        try:
            self.store.check_labels(payload, str(path))
        except UssegError as exc:
            logger.warning("%s: training starts from initial weights: %s", self.store.name, exc)
            return None
        return str(path) if ok else None

    def _fits_labels(self, path: Path) -> bool:
        """Whether the checkpoint ``path`` is for this model's label set (an unreadable file counts as fitting: the
        publish gate handles it as before label sets)."""
        try:
            payload = read_checkpoint(path)
        except UssegError:
            return True
        try:
            self.store.check_labels(payload, str(path))
        except UssegError as exc:
            logger.warning("%s: %s", self.store.name, exc)
            return False
        return True

    def _write_stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        stats = json_safe(stats)
        tmp = self.stats_path.with_suffix(".json.part")
        tmp.write_text(json.dumps(stats, indent=2))
        os.replace(tmp, self.stats_path)
        return stats

    def _split(self, datastore: Datastore, records: dict[str, Any], val_split: float) -> tuple[list, list]:
        state_dir = datastore.state_dir() if hasattr(datastore, "state_dir") else str(self.store.model_dir)
        train_ids, val_ids = FixedSplit(os.path.join(state_dir, SPLITS_FILE)).assign(
            self.store.name, sorted(records), val_split)
        return [records[i] for i in train_ids], [records[i] for i in val_ids]

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        opts = self.options(request)
        if opts.get("rollback"):
            entry = self.history.rollback()
            return self._write_stats({"model": self.store.name, "rollback": entry,
                                      "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        start = time.time()
        records = datastore_records(datastore, self.kind)
        if not records:
            raise ValueError(f"no labelled {self.kind}s in the datastore to train {self.store.name} on")
        train, val = self._split(datastore, records, float(opts.get("val_split", 0.2)))
        seed = int(opts.get("seed", 0))
        work = self.store.model_dir / WORK_DIR / f"train_{self.store.name}_{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            device = opts.get("device") or ("cuda" if self.store.device.type == "cuda" else "cpu")
            kwargs: dict[str, Any] = {
                "records": {"train": [_record_to_json(r) for r in train], "val": [_record_to_json(r) for r in val]},
                "out_dir": str(work / "run"),
                "config": self.store.config,
                "epochs": int(opts["max_epochs"]),
                "batch_size": int(opts["batch_size"]),
                "lr": float(opts["lr"]),
                "device": device,
                "pretrained": self._start_weights(),
                "progress": False,
                "seed": seed,
            }
            if _training_labels(self.labels) is not None:
                kwargs["labels"] = self.labels.to_json()
            result = self._train(kwargs, opts, work)
            val_data = (_datasets(self.store.name, self.store.config, val, False, seed, _training_labels(self.labels))
                        if val else None)
            min_frames = int(opts.get("min_val_frames", DEFAULT_MIN_VAL_FRAMES))
            kept, checkpoint = chosen_checkpoint(result, len(val_data) if val_data is not None else 0, min_frames)
            if not checkpoint or not os.path.isfile(checkpoint):
                raise RuntimeError(f"training of {self.store.name} wrote no checkpoint")
            decision = self._decide(checkpoint, val_data, opts, device, min_frames)
            record = {"score": decision["candidate_dice"], "live_score": decision["live_dice"],
                      "labelled_studies": len(records), "train_studies": len(train), "val_studies": len(val),
                      "reason": decision["reason"], "bootstrap": bool(opts.get("bootstrap"))}
            if decision["publish"]:
                entry = self.history.publish(checkpoint, record, current=self.store.weights_path())
            else:
                entry = self.history.keep_candidate(checkpoint, record)
                logger.warning("%s: %s", self.store.name, decision["reason"])
            stats = {
                "model": self.store.name,
                "config": self.store.config,
                "labels": self.labels.describe(),
                "items": len(records),
                "train_items": [r.id for r in train],
                "val_items": [r.id for r in val],
                "reviewed_frames": {r.id: list(r.labelled) for r in train + val
                                    if isinstance(r, ClipRecord) and r.labelled is not None},
                "epochs": kwargs["epochs"],
                "best_dice": result.get("best_dice"),
                "best_epoch": result.get("best_epoch"),
                "kept": kept,
                "initial_val_dice": result.get("initial_val_dice"),
                "world_size": result.get("world_size", 1),
                "history": result.get("history", []),
                **decision,
                "version": entry.get("version"),
                "published": str(self.store.trained_path) if decision["publish"] else None,
                "published_mtime": self.store.trained_path.stat().st_mtime if decision["publish"] else None,
                "total_time": round(time.time() - start, 2),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            logger.info("%s: trained on %d %ss; %s", self.store.name, len(train), self.kind, decision["reason"])
            return self._write_stats(stats)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _decide(self, checkpoint: str, dataset: Any, opts: dict[str, Any], device: str,
                min_frames: int) -> dict[str, Any]:
        """Score the candidate and the live model on the validation ``dataset`` (``None``: no validation studies);
        decide whether to publish."""
        live_path = self.store.weights_path()
        if live_path is not None and not self._fits_labels(live_path):
            live_path = None  # a model of another label set is not a live model of this one (the store refuses it)
        candidate_dice = live_dice = None
        candidate_structures: dict[str, float] = {}
        val_frames = 0
        val = dataset is not None
        if val:
            val_frames = len(dataset)
            candidate = load_checkpoint(checkpoint)[0]
            candidate_dice = score_model(self.store.name, candidate, dataset, device)
            if not self.labels.is_binary:
                candidate_structures = score_structures(self.store.name, candidate, dataset, device, self.labels)
            if live_path is not None:
                try:
                    live_dice = score_model(self.store.name, load_checkpoint(live_path)[0], dataset, device)
                except UssegError as exc:
                    logger.warning("%s: live model %s cannot be scored (%s)", self.store.name, live_path, exc)
        if candidate_dice is not None and not math.isfinite(candidate_dice):
            candidate_dice = None
        publish, reason = should_publish(candidate_dice, live_dice, float(opts["tolerance"]),
                                         bool(opts.get("force")), has_live=live_path is not None,
                                         val_frames=val_frames if val else None, min_val_frames=min_frames)
        if publish and not opts.get("force") and val and candidate_dice is None:
            publish, reason = False, "not published: the candidate's validation Dice is not a number"
        return {"publish": publish, "reason": reason, "candidate_dice": candidate_dice, "live_dice": live_dice,
                **({"candidate_dice_by_structure": candidate_structures} if candidate_structures else {}),
                "tolerance": float(opts["tolerance"]), "forced": bool(opts.get("force")), "val_frames": val_frames,
                "min_val_frames": min_frames}

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
