"""Unit tests of the MONAI Label app's pieces that need no server: ids, scores, atomic writes, model reload."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from PIL import Image

from monailabel_app.lib import datastore as ds_module
from monailabel_app.lib.datastore import SafeLocalDatastore, atomic_copy
from monailabel_app.lib.http import http_error_for, validate_id
from monailabel_app.lib.model_store import ModelStore
from monailabel_app.lib.scoring.temporal import temporal_disagreement
from usseg_models.errors import CheckpointError, MissingDecoderError, UltrasoundIOError
from usseg_models.networks.checkpoint import save_checkpoint
from usseg_models.networks.factory import build_network


@pytest.mark.parametrize("good", ["cine_000", "1.2.840.113619.2.55.3", "a-b_c+d.e"])
def test_validate_id_accepts_plain_ids(good):
    assert validate_id(good) == good


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a\\b", "..", "x..y", "/etc/passwd", ".hidden", "a b", None, 3])
def test_validate_id_rejects_paths_and_junk(bad):
    with pytest.raises(HTTPException) as err:
        validate_id(bad)
    assert err.value.status_code == 400


def test_http_error_mapping():
    assert http_error_for(MissingDecoderError("needs pylibjpeg")).status_code == 415
    assert http_error_for(UltrasoundIOError("bad file")).status_code == 422
    assert http_error_for(CheckpointError("bad ckpt")).status_code == 422
    assert http_error_for(ValueError("bad value")).status_code == 400
    assert http_error_for(UltrasoundIOError("truncated x.dcm")).detail == "truncated x.dcm"
    with pytest.raises(TypeError):
        http_error_for(RuntimeError("a bug, not a client error"))


def test_temporal_disagreement_values():
    m = np.zeros((6, 5, 4), np.uint8)
    assert temporal_disagreement(m) == 0.0  # empty everywhere: full agreement
    m[1:4, 1:3, :] = 1
    assert temporal_disagreement(m) == 0.0  # identical masks
    m[:, :, 3] = 0
    m[4:6, 3:5, 3] = 1  # last frame disjoint from the previous one
    assert temporal_disagreement(m) == pytest.approx(1 / 3)
    m2 = np.zeros((4, 4, 2), np.uint8)
    m2[0:2, 0:2, 0] = 1
    m2[0:2, 0:1, 1] = 1  # |A|=4, |B|=2, |A∩B|=2 -> Dice 2/3
    assert temporal_disagreement(m2) == pytest.approx(1 / 3)
    assert temporal_disagreement(np.ones((3, 3, 1))) == 0.0
    with pytest.raises(ValueError):
        temporal_disagreement(np.zeros((3, 3)))


def test_atomic_copy_interrupted_keeps_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "label.nii.gz"
    dest.write_bytes(b"old label")
    src = tmp_path / "new.bin"
    src.write_bytes(b"new label" * 1000)

    def broken_copy(inp, out):
        out.write(inp.read(10))
        raise OSError("disk full")

    monkeypatch.setattr(ds_module.shutil, "copyfileobj", broken_copy)
    with pytest.raises(OSError):
        atomic_copy(str(src), str(dest))
    assert dest.read_bytes() == b"old label"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label.nii.gz", "new.bin"]
    monkeypatch.undo()
    atomic_copy(str(src), str(dest))
    assert dest.read_bytes() == src.read_bytes()


def _png(path, value=0):
    arr = np.full((24, 32), value, np.uint8)
    arr[5:10, 5:12] = 200
    Image.fromarray(arr).save(path)
    return path


def test_safe_local_datastore_labels_survive_restart_and_bad_ids(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    _png(studies / "img_a.png")
    _png(studies / "img_b.png")
    ext = ["*.png", "*.nii.gz"]
    store = SafeLocalDatastore(str(studies), extensions=ext)
    assert sorted(store.list_images()) == ["img_a", "img_b"]
    label = tmp_path / "upload.png"  # a valid label: the image's (X, Y), values 0/1
    Image.fromarray((np.asarray(Image.open(studies / "img_a.png")) == 200).astype(np.uint8)).save(label)
    assert store.save_label("img_a", str(label), "final", {"who": "test"}) == "img_a"
    with pytest.raises(HTTPException) as err:
        store.save_label("../img_a", str(label), "final", {})
    assert err.value.status_code == 400
    with pytest.raises(HTTPException) as err:
        store.save_label("img_zz", str(label), "final", {})
    assert err.value.status_code == 404
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(HTTPException) as err:
        store.save_label("img_b", str(junk), "final", {})
    assert 400 <= err.value.status_code < 500
    with pytest.raises(HTTPException):
        store.add_image("evil/../x", str(label), {})
    assert not list(studies.rglob("*.part"))
    reopened = SafeLocalDatastore(str(studies), extensions=ext)
    assert reopened.get_labeled_images() == ["img_a"]
    assert reopened.get_label_info("img_a", "final")["who"] == "test"
    assert (studies / "labels" / "final" / "img_a.png").read_bytes() == label.read_bytes()


def test_model_store_reloads_on_checkpoint_change(tmp_path):
    store = ModelStore("intrasense", "small", tmp_path, "cpu")
    net, version = store.refresh()
    assert version["weights"] == "initial"
    first = next(iter(net.state_dict().values())).clone()
    trained = store.trained_path
    other = build_network("intrasense", "small")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    save_checkpoint(trained, other, "intrasense", "small")
    net2, version2 = store.refresh()
    assert net2 is net  # same module, new weights
    assert version2["weights"] == "intrasense.pt"
    key = next(iter(net.state_dict()))
    assert torch.equal(net.state_dict()[key], other.state_dict()[key])
    assert not torch.equal(net.state_dict()[key], first) or first.numel() == 0
    # a checkpoint for another network is refused and the weights in use stay
    torch.save({"network": "dsanet", "config": "small", "state_dict": {}}, trained)
    os.utime(trained, ns=(os.stat(trained).st_mtime_ns + 10**9,) * 2)
    _, version3 = store.refresh()
    assert version3 == version2
    assert torch.equal(net.state_dict()[key], other.state_dict()[key])


def test_app_imports_without_torchvision():
    """Importing the app (and MONAI Label's parts it uses) must not need torchvision."""
    code = (
        "import sys; sys.modules['torchvision'] = None; sys.modules['timm'] = None\n"
        "import importlib.util, pathlib, monailabel_app\n"
        "import monailabel_app.lib.configs, monailabel_app.lib.trainers, monailabel_app.lib.datastore\n"
        "p = pathlib.Path(monailabel_app.__file__).parent / 'main.py'\n"
        "spec = importlib.util.spec_from_file_location('main', p); m = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m); print(m.USSegApp.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "USSegApp" in out.stdout


def test_json_safe_replaces_non_finite_numbers():
    from monailabel_app.lib.trainers.base import json_safe

    out = json_safe({"a": float("nan"), "b": [1.5, float("inf"), np.float32(2.0)], "c": np.int64(3), "d": None})
    assert out == {"a": None, "b": [1.5, None, 2.0], "c": 3, "d": None}


def test_random_strategy_survives_an_image_proposed_this_second():
    """MONAI Label's Random raised ValueError (HTTP 500) when every candidate was proposed in the same second."""
    import time as _time

    from monailabel.tasks.activelearning.random import Random

    from monailabel_app.lib.compat.safe_random import SafeRandom

    class _Store:
        def get_unlabeled_images(self, tag=None, labels=None):
            return ["only"]

        def get_image_info(self, image):
            return {"strategy": {"random": {"ts": int(_time.time()) + 5}}}  # "just proposed" (clock included)

    with pytest.raises(ValueError):
        Random()({"strategy": "random"}, _Store())
    assert SafeRandom()({"strategy": "random"}, _Store()) == {"id": "only", "weight": 1}
