"""The MONAI Label app in a real server process choosing the next study and storing labels, as Slicer does.

Active learning strategies return only unlabelled studies; the official Slicer plugin's sequence (upload a
volume, infer, save the label with its ``label_info``) ends with the label in the datastore. The server is the one
of every ``test_app_server*.py`` module (:mod:`app_server_fixtures`).
"""

from __future__ import annotations

import json

import nibabel as nib
import pytest
import requests
from app_server_fixtures import make_volume_nifti, split_multipart

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_active_learning_returns_unlabelled_study(server, client):
    labelled = {p.name.split(".")[0] for p in (server.studies_dir / "labels" / "final").iterdir()}
    for strategy in ("random", "first", "temporal_uncertainty"):
        r = requests.post(f"{server.url}/activelearning/{strategy}", json={}, timeout=300)
        assert r.status_code == 200, r.text[:300]
        sample = r.json()
        assert sample["id"] and sample["id"] not in labelled, (strategy, sample)
    sample = requests.post(f"{server.url}/activelearning/temporal_uncertainty", json={}, timeout=300).json()
    assert sample["id"].startswith("cine_") and 0.0 <= sample["score"] <= 1.0
    assert client.next_sample("first", {})["id"] not in labelled
    r = requests.post(f"{server.url}/activelearning/nosuch", json={}, timeout=30)
    assert r.status_code == 404
    # each of those five requests asked for an automatic scoring run (this server keeps MONAI Label's default):
    # at most one waits to start (compat.scoring_queue; stock MONAI Label queues one per request, about 10 s each)
    tasks = requests.get(f"{server.url}/scoring/", params={"all": True}, timeout=30).json()
    waiting = [t for t in tasks if t["status"] == "SUBMITTED"]
    assert len(waiting) <= 1, [(t["status"], t["request"].get("method")) for t in tasks]


def test_slicer_plugin_sequence(server, cine_id, tmp_path):
    """What the official Slicer plugin does: upload a volume, infer with it, save a label with label_info."""
    vol = tmp_path / "slicer_clip.nii.gz"
    make_volume_nifti(server.studies_dir / f"{cine_id}.dcm", vol)
    with open(vol, "rb") as f:
        r = requests.put(f"{server.url}/datastore/?image=slicer_clip", files={"file": ("slicer_clip.nii.gz", f)})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["image"] == "slicer_clip"
    with open(vol, "rb") as f:
        r = requests.post(
            f"{server.url}/infer/dsanet", params={"image": "slicer_clip"}, files={"file": ("slicer_clip.nii.gz", f)},
            data={"params": json.dumps({"result_extension": ".nii.gz"})}, timeout=300,
        )
    assert r.status_code == 200, r.text[:300]
    out, _ = split_multipart(r, tmp_path, "slicer_label")
    label_info = [{"name": "lesion", "idx": 1}]
    with open(out, "rb") as f:
        r = requests.put(
            f"{server.url}/datastore/label", params={"image": "slicer_clip", "tag": "final"},
            files={"label": ("slicer_clip.nii.gz", f)}, data={"params": json.dumps({"label_info": label_info})},
        )
    assert r.status_code == 200, r.text[:300]
    saved = server.studies_dir / "labels" / "final" / "slicer_clip.nii.gz"
    assert saved.is_file() and nib.load(str(saved)).shape == nib.load(str(vol)).shape
    info = requests.get(f"{server.url}/datastore/label/info", params={"label": "slicer_clip", "tag": "final"}).json()
    assert info["label_info"] == label_info
