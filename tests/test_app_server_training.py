"""The MONAI Label app in a real server process training: on saved labels, on request, and beside inference.

Two new labels start an IntraSense-Net training whose published weights the next inference uses without a
restart; a DSANet training runs to DONE; a long one is observed RUNNING while both models answer, a second
training is refused and ``DELETE /train/`` stops it unpublished. The server is the one of every
``test_app_server*.py`` module (:mod:`app_server_fixtures`).
"""

from __future__ import annotations

import json
import time

import nibabel as nib
import pytest
import requests
from app_server_fixtures import load

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _wait_training(url, model, timeout=600):
    """Wait for the latest training task of ``model`` (from ``GET /train/?all=true``) to finish; return it."""
    deadline = time.monotonic() + timeout
    task = None
    while time.monotonic() < deadline:
        r = requests.get(f"{url}/train/", params={"all": True}, timeout=30)
        if r.status_code == 200:
            tasks = [t for t in r.json() if t.get("request", {}).get("model") == model]
            task = tasks[-1] if tasks else None
            if task and task.get("status") in ("DONE", "ERROR", "STOPPED"):
                return task
        time.sleep(0.5)
    raise TimeoutError(f"training of {model} did not finish: {task}")


def test_saved_labels_trigger_retraining_and_next_infer_uses_it(server, image_png, tmp_path):
    """auto_retrain_after=2: two new image labels start training; the published model is used without restart."""
    model_file = server.app_dir / "model" / "intrasense.pt"
    assert not model_file.exists()
    before = requests.post(
        f"{server.url}/infer/intrasense", params={"output": "json"},
        files={"file": (image_png.name, image_png.read_bytes())}, timeout=300,
    ).json()
    assert before["model"]["weights"] == "initial"
    held = sorted(server.held_out.glob("image_*.png"))
    assert len(held) == 2
    responses = []
    for label in held:
        assert not (server.studies_dir / "labels" / "final" / label.name).exists()
        r = requests.put(
            f"{server.url}/datastore/label", params={"image": label.stem, "tag": "final"},
            files={"label": (label.name, label.read_bytes())},
        )
        assert r.status_code == 200, r.text[:300]
        responses.append(r.json())
    assert responses[0]["new_labels"]["intrasense"] == 1 and "train" not in responses[0]
    assert "train" in responses[1], responses[1]
    # a second training cannot start while this one runs; inference keeps working meanwhile
    running = requests.get(f"{server.url}/train/", params={"check_if_running": True}, timeout=30)
    if running.status_code == 200:
        r = requests.post(f"{server.url}/train/dsanet", json={}, timeout=30)
        if r.status_code == 200:  # the intrasense run ended in between: let this one finish too
            _wait_training(server.url, "dsanet")
        else:
            assert r.status_code == 429, r.text[:300]
        during = requests.post(
            f"{server.url}/infer/intrasense", params={"image": held[0].stem, "output": "json"}, timeout=300
        )
        assert during.status_code == 200, during.text[:300]
    status = _wait_training(server.url, "intrasense")
    assert status["status"] == "DONE", status
    assert model_file.is_file()
    stats = json.loads((server.app_dir / "model" / "intrasense_train.json").read_text())
    assert stats["items"] >= 3 and stats["epochs"] == 1
    after = requests.post(
        f"{server.url}/infer/intrasense", params={"output": "json"},
        files={"file": (image_png.name, image_png.read_bytes())}, timeout=300,
    ).json()
    assert after["model"]["weights"] == "intrasense.pt"
    assert after["model"]["mtime"] == pytest.approx(model_file.stat().st_mtime, abs=1e-3)
    model_info = requests.get(f"{server.url}/info/", timeout=30).json()["train_stats"]["intrasense"]
    assert model_info["published"].endswith("intrasense.pt")


def test_train_dsanet_small_to_done_then_infer(server, client, cine_id):
    r = requests.post(f"{server.url}/train/dsanet", json={"max_epochs": 1}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    status = _wait_training(server.url, "dsanet")
    assert status["status"] == "DONE", status
    model_file = server.app_dir / "model" / "dsanet.pt"
    assert model_file.is_file()
    _, params = client.infer("dsanet", cine_id, {})
    assert params["model"]["weights"] == "dsanet.pt"
    assert params["model"]["mtime"] == pytest.approx(model_file.stat().st_mtime, abs=1e-3)


def test_inference_while_training_runs(server, client, cine_id, image_png):
    """A long training is started and observed RUNNING; meanwhile a second training is refused (429) and both
    models still answer infer requests; then ``DELETE /train/`` stops it and nothing is published by it."""
    published = {p.name: p.stat().st_mtime for p in (server.app_dir / "model").glob("*.pt")}
    r = requests.post(f"{server.url}/train/dsanet", json={"max_epochs": 200}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    deadline = time.monotonic() + 120
    while requests.get(f"{server.url}/train/", params={"check_if_running": True}, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "training never reached RUNNING"
        time.sleep(0.2)
    try:
        second = requests.post(f"{server.url}/train/intrasense", json={}, timeout=30)
        assert second.status_code == 429, second.text[:300]
        label, params = client.infer("dsanet", cine_id, {})
        frames, _ = load(server.studies_dir / f"{cine_id}.dcm")
        assert nib.load(label).shape == frames.shape[:3], params
        during = requests.post(
            f"{server.url}/infer/intrasense", params={"output": "json"},
            files={"file": (image_png.name, image_png.read_bytes())}, timeout=300,
        )
        assert during.status_code == 200, during.text[:300]
        still = requests.get(f"{server.url}/train/", params={"check_if_running": True}, timeout=30)
        assert still.status_code == 200, "training ended before the checks ran: they did not overlap it"
    finally:
        stopped = requests.delete(f"{server.url}/train/", timeout=60)
    assert stopped.status_code == 200 and stopped.json()["status"] == "STOPPED", stopped.text[:300]
    assert {p.name: p.stat().st_mtime for p in (server.app_dir / "model").glob("*.pt")} == published
