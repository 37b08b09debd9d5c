"""A retrain that got worse never replaces the live model; ``force`` publishes; ``rollback`` restores.

Real server on a copy of the sample studies. The live model is the DSANet the session's bootstrapped server trained
on the sample studies (``pretrained_path``; :mod:`bootstrap_fixtures`).
The datastore's fixed split is written before the server starts (``cine_000`` validation, ``cine_001`` and
``cine_002`` training), then the *training* studies get deliberately wrong labels (the complement of the truth);
the validation study keeps its truth, so the retrained candidate scores worse and must not be published.
"""

from __future__ import annotations

import gzip
import json
import time

import nibabel as nib
import numpy as np
import pytest
import requests
from server_utils import MonaiLabelServer, copy_app, copy_studies

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def good_checkpoint(bootstrapped):
    """The DSANet the bootstrapped server trained on the sample studies (:mod:`bootstrap_fixtures`)."""
    return bootstrapped.checkpoints["dsanet"]


def _predict(url: str, image: str = "cine_000") -> bytes:
    r = requests.post(f"{url}/infer/dsanet", params={"image": image, "output": "image"}, timeout=300)
    assert r.status_code == 200, r.text
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(r.content)).dataobj).tobytes()


def _train(url: str, params: dict, timeout: float = 900) -> dict:
    previous = requests.get(f"{url}/train/", timeout=30)
    previous_id = previous.json().get("id") if previous.status_code == 200 else None
    r = requests.post(f"{url}/train/dsanet", json=params, timeout=60)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = requests.get(f"{url}/train/", timeout=30).json()
        if task.get("id") != previous_id and task.get("status") in ("DONE", "ERROR"):
            assert task["status"] == "DONE", task.get("details")
            return requests.get(f"{url}/info/", timeout=30).json()
        time.sleep(1)
    raise TimeoutError("training did not finish")


def test_worse_retrain_kept_as_candidate_force_publishes_rollback_restores(tmp_path, good_checkpoint):
    app, studies = copy_app(tmp_path / "app"), copy_studies(tmp_path / "studies")
    (studies / ".usseg_splits.json").write_text(json.dumps(
        {"dsanet": {"cine_000": "val", "cine_001": "train", "cine_002": "train"}}))
    stale = app / "model" / ".work" / "train_dsanet_999999"
    stale.mkdir(parents=True)
    (stale / "leftover.pt").write_bytes(b"x")
    conf = {"models": "dsanet", "config": "small", "auto_retrain_after": "0", "pretrained_path": str(good_checkpoint)}
    srv = MonaiLabelServer(app, studies, conf=conf)
    url = srv.start()
    try:
        assert not stale.exists(), "a stale training folder survived the start"
        original = _predict(url)

        for image in ("cine_001", "cine_002"):  # poison the training side only
            truth = np.asarray(nib.load(str(studies / "labels" / "final" / f"{image}.nii.gz")).dataobj)
            wrong = tmp_path / f"{image}_wrong.nii.gz"
            nib.save(nib.Nifti1Image((1 - (truth > 0)).astype(np.uint8), np.eye(4)), str(wrong))
            r = requests.put(f"{url}/datastore/label", params={"image": image, "tag": "final"},
                             files={"label": (wrong.name, wrong.read_bytes())}, timeout=60)
            assert r.status_code == 200, r.text

        info = _train(url, {"max_epochs": 3, "lr": 1e-3})
        stats = info["train_stats"]["dsanet"]
        assert stats["publish"] is False, stats
        assert stats["val_items"] == ["cine_000"] and stats["train_items"] == ["cine_001", "cine_002"]
        assert stats["candidate_dice"] < stats["live_dice"] - 0.01
        assert stats["val_frames"] == 24 and stats["min_val_frames"] == 16  # one 24-frame clip: enough to judge
        assert info["trainers"]["dsanet"]["config"]["min_val_frames"] == 16  # stated in /info/
        assert info["usseg"]["dsanet"]["candidate"]["reason"].startswith("not published")
        assert not (app / "model" / "dsanet.pt").exists()
        assert _predict(url) == original  # byte-identical predictions of the live model

        info = _train(url, {"max_epochs": 1, "lr": 1e-3, "force": True})
        assert info["train_stats"]["dsanet"]["publish"] is True and info["train_stats"]["dsanet"]["forced"] is True
        assert (app / "model" / "dsanet.pt").exists()
        forced = _predict(url)
        assert forced != original

        info = _train(url, {"rollback": True})
        history = info["usseg"]["dsanet"]["history"]
        assert history[-1]["rollback_to"] == 1 and "before the first recorded publish" in history[0]["note"]
        assert _predict(url) == original
    finally:
        srv.stop()
    assert not list((app / "model" / ".work").glob("*")), "training left its work folder"


def test_too_small_a_validation_set_publishes_only_with_force():
    from monailabel_app.lib.trainers.publish import should_publish

    # a better candidate, scored on too few frames, does not replace a live model ...
    ok, reason = should_publish(0.9, 0.5, 0.01, False, has_live=True, val_frames=5, min_val_frames=16)
    assert not ok and "5 labelled frame(s), fewer than min_val_frames 16" in reason
    # ... unless forced; with enough frames it does; with no live model the first one is published
    assert should_publish(0.9, 0.5, 0.01, True, has_live=True, val_frames=5, min_val_frames=16)[0]
    assert should_publish(0.9, 0.5, 0.01, False, has_live=True, val_frames=16, min_val_frames=16)[0]
    assert should_publish(0.9, None, 0.01, False, has_live=False, val_frames=1, min_val_frames=16)[0]


def test_too_small_a_validation_set_keeps_the_last_epoch_not_the_best_scoring_one(tmp_path):
    from monailabel_app.lib.trainers.base import chosen_checkpoint

    best, last = tmp_path / "best.pt", tmp_path / "last.pt"
    result = {"best_checkpoint": str(best), "last_checkpoint": str(last)}
    # one validation image (the sample studies' IntraSense-Net split) is too few to pick an epoch by ...
    assert chosen_checkpoint(result, 1, 16) == ("last", str(last))
    # ... enough frames are; with no validation at all the last epoch is kept too (the trainer's "best" would be
    # its lowest training loss), unless there is no last checkpoint
    assert chosen_checkpoint(result, 16, 16) == ("best", str(best))
    assert chosen_checkpoint({"best_checkpoint": str(best)}, 0, 16) == ("best", str(best))
    assert chosen_checkpoint(result, 0, 16) == ("last", str(last))
