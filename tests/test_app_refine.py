"""Refinement and the untrained-model answer through a real server (``POST /infer/dsanet_refine``, 409).

One server per module on a copy of the sample studies, with ``untrained_infer refuse`` (the product default) and
no bootstrap training (tests/test_app_bootstrap.py covers that), so the model stays untrained until the test
publishes a checkpoint itself.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from server_utils import MonaiLabelServer, copy_app, copy_studies

pytestmark = [pytest.mark.server, pytest.mark.slow]

monailabel_client = pytest.importorskip("monailabel.client")

CONF = {"models": "dsanet", "config": "small", "untrained_infer": "refuse", "bootstrap_min_labels": "0",
        "auto_retrain_after": "0", "refine_max_steps": "400", "refine_time_budget_s": "60",
        "refine_max_concurrent": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine")
    app, studies = copy_app(root / "app"), copy_studies(root / "studies")
    srv = MonaiLabelServer(app, studies, conf=CONF)
    srv.start()
    yield {"url": srv.url, "app": app, "studies": studies, "root": root}
    srv.stop()


def _truth(studies: Path, image_id: str) -> np.ndarray:
    return np.asarray(nib.load(str(studies / "labels" / "final" / f"{image_id}.nii.gz")).dataobj).astype(np.uint8)


def _label_file(path: Path, label: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(label.astype(np.uint8), np.eye(4)), str(path))
    return path


def _refine(url, image_id, label_path, params, timeout=300):
    with open(label_path, "rb") as f:
        return requests.post(f"{url}/infer/dsanet_refine", params={"image": image_id, "output": "all"},
                             files={"label": (Path(label_path).name, f)}, data={"params": json.dumps(params)},
                             timeout=timeout)


def _split(response, tmp: Path) -> tuple[np.ndarray, dict]:
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    params, out = None, None
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers.get(b"Content-Disposition", b"").decode()
        if 'name="params"' in disposition:
            params = json.loads(part.content)
        else:
            out = tmp / "result.nii.gz"
            out.write_bytes(part.content)
    return np.asarray(nib.load(str(out)).dataobj), params


def test_untrained_model_answers_409_with_a_sentence_and_info_says_so(server):
    url = server["url"]
    info = requests.get(f"{url}/info/", timeout=30).json()
    assert info["usseg"]["dsanet"]["trained"] is False
    assert "dsanet_refine" in info["models"]
    r = requests.post(f"{url}/infer/dsanet", params={"image": "cine_000"}, timeout=120)
    assert r.status_code == 409
    assert r.json()["detail"].startswith("model dsanet is not trained yet")
    assert "allow_untrained" in r.json()["detail"]
    r = requests.post(f"{url}/infer/dsanet", params={"image": "cine_000"},
                      data={"params": json.dumps({"allow_untrained": True})}, timeout=120)
    assert r.status_code == 200


def test_refine_works_before_any_training_and_returns_drawn_frames(server, tmp_path):
    url, studies = server["url"], server["studies"]
    truth = _truth(studies, "cine_001")
    drawn = np.zeros_like(truth)
    drawn[..., 5] = truth[..., 5]
    drawn[..., 11] = truth[..., 11]
    drawn[..., 17] = np.roll(truth[..., 17], 4, axis=1)  # not what any model predicts
    r = _refine(url, "cine_001", _label_file(tmp_path / "fix.nii.gz", drawn),
                {"corrected_frames": [5, 11, 17], "max_steps": 3})
    assert r.status_code == 200, r.text
    label, params = _split(r, tmp_path)
    assert label.shape == truth.shape
    np.testing.assert_array_equal(label[..., 5], truth[..., 5])
    np.testing.assert_array_equal(label[..., 17], drawn[..., 17])
    assert params["refinement"]["corrected_frames"] == [5, 11, 17]
    # three corrections: one is held out to judge the model, so the (untrained) model is adapted
    assert params["refinement"]["steps"] == 3 and params["untrained"] is True


@pytest.mark.parametrize(
    "params, label_shape, fill, message",
    [
        ({"corrected_frames": [24]}, None, 1, "outside"),
        ({"corrected_frames": [-1]}, None, 1, "outside"),
        ({"corrected_frames": []}, None, 1, "empty"),
        ({}, None, 1, "corrected_frames is required"),
        ({"corrected_frames": "3"}, None, 1, "list"),
        ({"corrected_frames": [3, 3]}, None, 1, "twice"),
        ({"corrected_frames": [3]}, (128, 128, 7), 1, "(128, 128, 24)"),
        ({"corrected_frames": [3]}, (64, 64, 24), 1, "(128, 128, 24)"),
        ({"corrected_frames": [3]}, None, 255, "only 0 and 1"),
        ({"corrected_frames": [3], "max_steps": 10**6}, None, 1, "server's limit"),
        ({"corrected_frames": [3], "time_budget_s": "fast"}, None, 1, "number"),
        ({"corrected_frames": [3], "max_steps": 2.5}, None, 1, "whole number"),
        ({"corrected_frames": [3], "mode": "fast"}, None, 1, "mode must be one of"),
        ({"corrected_frames": [3], "mode": ["propagate"]}, None, 1, "mode must be one of"),
    ],
)
def test_bad_refinement_requests_get_422_naming_the_problem(server, tmp_path, params, label_shape, fill, message):
    label = np.zeros(label_shape or (128, 128, 24), np.uint8)
    label[40:60, 40:60, :] = fill
    r = _refine(server["url"], "cine_000", _label_file(tmp_path / "bad.nii.gz", label), params)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_refine_without_label_file_is_refused(server):
    r = requests.post(f"{server['url']}/infer/dsanet_refine", params={"image": "cine_000"},
                      data={"params": json.dumps({"corrected_frames": [1]})}, timeout=60)
    assert r.status_code == 422 and "label" in r.json()["detail"]


def test_too_many_refinements_at_once_get_429(server, tmp_path):
    url, studies = server["url"], server["studies"]
    truth = _truth(studies, "cine_000")
    path = _label_file(tmp_path / "fix.nii.gz", truth)
    slow = {"corrected_frames": [4], "max_steps": 400, "time_budget_s": 8, "mode": "adapt"}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(_refine, url, "cine_000", path, slow)
        time.sleep(2.0)
        second = pool.submit(_refine, url, "cine_000", path, slow)
        time.sleep(1.0)
        info = requests.get(f"{url}/info/", timeout=10)  # the server still answers while a refinement runs
        answers = [first.result(), second.result()]
    # whichever took the one slot first ran; the other was refused at once instead of queueing
    assert sorted(a.status_code for a in answers) == [200, 429], [a.text[:200] for a in answers]
    refused = next(a for a in answers if a.status_code == 429)
    assert "refinement" in refused.json()["detail"]
    assert info.status_code == 200


def test_served_weights_and_predictions_unchanged_by_refinement(server, tmp_path):
    """Publish a checkpoint, then refine: the served file's bytes and /infer/dsanet's output do not change."""
    from usseg_models.networks import build_network
    from usseg_models.networks.checkpoint import save_checkpoint

    model_path = Path(server["app"]) / "model" / "dsanet.pt"
    save_checkpoint(model_path, build_network("dsanet", "small"), "dsanet", "small", {}, {"note": "test"})
    url, studies = server["url"], server["studies"]
    before_bytes = hashlib.sha256(model_path.read_bytes()).hexdigest()

    def infer() -> bytes:
        r = requests.post(f"{url}/infer/dsanet", params={"image": "cine_002", "output": "image"}, timeout=120)
        assert r.status_code == 200, r.text
        return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(r.content)).dataobj).tobytes()

    before = infer()
    truth = _truth(studies, "cine_002")
    r = _refine(url, "cine_002", _label_file(tmp_path / "fix.nii.gz", truth),
                {"corrected_frames": [2, 12, 22], "max_steps": 20})
    assert r.status_code == 200, r.text
    assert "untrained" not in _split(r, tmp_path)[1]
    assert infer() == before
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == before_bytes
    assert requests.get(f"{url}/info/", timeout=30).json()["usseg"]["dsanet"]["trained"] is True


def test_refine_through_monai_label_client(server, tmp_path):
    """The official client: upload a cine file with its corrected label, get the refined label back."""
    client = monailabel_client.MONAILabelClient(server["url"])
    studies = server["studies"]
    truth = _truth(studies, "cine_001")
    label = _label_file(tmp_path / "fix.nii.gz", truth)
    result, params = client.infer("dsanet_refine", "", {"corrected_frames": [0, 12, 23], "max_steps": 2},
                                  label_in=str(label), file=str(studies / "cine_001.dcm"))
    refined = np.asarray(nib.load(result).dataobj)
    assert refined.shape == truth.shape
    for t in (0, 12, 23):
        np.testing.assert_array_equal(refined[..., t], truth[..., t])
    assert params["refinement"]["steps"] == 2 and params["refinement"]["corrected_frames"] == [0, 12, 23]


def test_reviewed_frames_outside_the_cine_are_refused_and_nothing_is_stored(server, tmp_path):
    url, studies = server["url"], server["studies"]
    stored = studies / "labels" / "final" / "cine_001.nii.gz"
    before = stored.read_bytes()
    label = _label_file(tmp_path / "l.nii.gz", _truth(studies, "cine_001"))

    def put(params):
        return requests.put(f"{url}/datastore/label", params={"image": "cine_001", "tag": "final"},
                            files={"label": (label.name, label.read_bytes())},
                            data={"params": json.dumps(params)}, timeout=60)

    r = put({"reviewed_frames": [3, 24]})
    assert r.status_code == 422 and "outside the cine's frames 0..23" in r.json()["detail"], r.text
    assert stored.read_bytes() == before
    r = put({"reviewed_frames": [3, 7]})
    assert r.status_code == 200, r.text
    info = requests.get(f"{url}/datastore/label/info", params={"label": "cine_001", "tag": "final"}, timeout=30)
    assert info.json()["reviewed_frames"] == [3, 7]


def test_propagate_mode_answers_without_learning_and_reuses_the_clips_flow(server, tmp_path):
    """``mode: propagate``: no adaptation, the corrected frames as drawn, the rest carried by optical flow; the
    second request of the same clip reuses its flow (cine_000: no earlier test computes its flow). /info/ lists the
    modes a client can ask for."""
    url, studies = server["url"], server["studies"]
    info = requests.get(f"{url}/info/", timeout=30).json()
    assert info["models"]["dsanet_refine"]["refine"]["modes"] == ["hybrid", "propagate", "adapt"]
    truth = _truth(studies, "cine_000")
    answers = []
    for frames in ([6, 18], [6, 12, 18]):
        drawn = np.zeros_like(truth)
        drawn[..., frames] = truth[..., frames]
        r = _refine(url, "cine_000", _label_file(tmp_path / f"p{len(frames)}.nii.gz", drawn),
                    {"corrected_frames": frames, "mode": "propagate"})
        assert r.status_code == 200, r.text
        label, params = _split(r, tmp_path)
        for t in frames:
            np.testing.assert_array_equal(label[..., t], truth[..., t])
        answers.append((label, params["refinement"]))
    (label, first), (_, second) = answers
    assert first["mode"] == "propagate" and first["steps"] == 0 and "fusion" not in first
    assert set(first["timings"]) == {"flow", "propagate"} and first["cached"] == []
    assert second["cached"] == ["flows:smooth"]
    from usseg_models.metrics import dice

    others = [t for t in range(truth.shape[2]) if t not in (6, 18)]
    assert dice(label[..., others] > 0, truth[..., others] > 0, frame_axis=-1) >= 0.8  # the sample cine's truth


def test_hybrid_answer_reports_its_parts(server, tmp_path):
    url, studies = server["url"], server["studies"]
    truth = _truth(studies, "cine_002")
    frames = [4, 12, 20]
    drawn = np.zeros_like(truth)
    drawn[..., frames] = truth[..., frames]
    r = _refine(url, "cine_002", _label_file(tmp_path / "h.nii.gz", drawn), {"corrected_frames": frames,
                                                                              "max_steps": 4})
    assert r.status_code == 200, r.text
    label, params = _split(r, tmp_path)
    refinement = params["refinement"]
    assert refinement["mode"] == "hybrid" and refinement["steps"] == 4
    assert {"flow", "propagate", "features", "adapt", "predict", "fuse"} <= set(refinement["timings"])
    assert refinement["flow"]["variant"] in ("smooth", "fine") and set(refinement["flow"]["loo_dice"]) == {
        "smooth", "fine"}
    assert "tau" in refinement["fusion"] and refinement["fusion"]["reason"]
    for t in frames:
        np.testing.assert_array_equal(label[..., t], truth[..., t])
