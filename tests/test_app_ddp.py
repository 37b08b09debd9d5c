"""The app trainer's data-parallel path: ``multi_gpu`` launches 2 CPU processes (gloo) through torchrun.

That both ranks end with identical weights is checked by the training engine's own test
(``tests/test_training_ddp.py``); here the app's launcher, data staging and publishing are exercised.
"""

from __future__ import annotations

import pytest
from server_utils import DATASTORE_FILE_EXT, copy_studies

from monailabel_app.lib.datastore import SafeLocalDatastore
from monailabel_app.lib.model_store import ModelStore
from monailabel_app.lib.trainers.base import UltrasoundTrainTask
from usseg_models.networks.checkpoint import read_checkpoint

pytestmark = [pytest.mark.slow]


def test_multi_gpu_trains_on_two_gloo_processes_and_publishes(tmp_path):
    studies = copy_studies(tmp_path / "studies")
    datastore = SafeLocalDatastore(str(studies), extensions=DATASTORE_FILE_EXT)
    store = ModelStore("intrasense", "small", tmp_path / "app" / "model", "cpu")
    defaults = {"max_epochs": 1, "batch_size": 2, "lr": 1e-4, "config": "small", "multi_gpu": False, "val_split": 0.2}
    task = UltrasoundTrainTask(store, "image", defaults, description="test")
    stats = task({"multi_gpu": True, "nproc": 2}, datastore)
    assert stats["world_size"] == 2
    assert stats["items"] == len(list((studies / "labels" / "final").glob("image*")))
    payload = read_checkpoint(store.trained_path)
    assert payload["network"] == "intrasense" and payload["config"] == "small"
    assert task.stats()["published_mtime"] == pytest.approx(store.trained_path.stat().st_mtime)
    _, version = store.refresh()
    assert version["weights"] == "intrasense.pt"
    assert not list(store.model_dir.parent.glob("train_*"))  # the staging folder is cleaned up


def test_trainer_refuses_bad_options_and_empty_data(tmp_path):
    studies = tmp_path / "empty"
    studies.mkdir()
    datastore = SafeLocalDatastore(str(studies), extensions=DATASTORE_FILE_EXT)
    store = ModelStore("intrasense", "small", tmp_path / "model", "cpu")
    defaults = {"max_epochs": 1, "batch_size": 2, "lr": 1e-4, "config": "small", "multi_gpu": False, "val_split": 0.2}
    task = UltrasoundTrainTask(store, "image", defaults, description="test")
    with pytest.raises(ValueError, match="no labelled images"):
        task({}, datastore)
    with pytest.raises(ValueError, match="max_epochs"):
        task({"max_epochs": 0}, datastore)
    with pytest.raises(ValueError, match="paper"):
        task({"config": "paper"}, datastore)
    with pytest.raises(ValueError):
        UltrasoundTrainTask(store, "volume", defaults, description="test")
