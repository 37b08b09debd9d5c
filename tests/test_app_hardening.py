"""Issue 14 against a real server: labels checked before storing, size limits, 4xx for malformed requests,
checked model uploads, active learning that skips poisoned studies, and a datastore watcher that survives bursts.

One server for the module (raw HTTP and MONAI Label's own client) on a copy of the sample studies; both models
start from a fixed random-initialised checkpoint (``pretrained_path``), so inference is allowed and no bootstrap
training runs.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
import torch
from app_server_fixtures import start_app_server
from PIL import Image

from monailabel_app.lib.label_counter import COUNTER_FILE
from usseg_models.networks.checkpoint import save_checkpoint
from usseg_models.networks.factory import build_network

pytestmark = [pytest.mark.server, pytest.mark.slow]

client_module = pytest.importorskip("monailabel.client.client")
MONAILabelClient = client_module.MONAILabelClient
MONAILabelClientException = client_module.MONAILabelClientException

CONF = {"models": "dsanet,intrasense", "config": "small", "auto_retrain_after": "1000"}
CINE, IMAGE = "cine_000", "image_000"  # labelled sample studies, (128, 128, 24) and (128, 128)


class Evil:
    """Pickled into a checkpoint: a weights-only load must refuse it."""

    def __reduce__(self):
        return (print, ("this must never run on the server",))


# ---- helpers -----------------------------------------------------------------------------------------------
def nifti(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def png(path: Path, array_xy: np.ndarray) -> Path:
    """Save an (X, Y[, 3]) array as PNG (Pillow wants rows first)."""
    Image.fromarray(np.ascontiguousarray(np.swapaxes(array_xy, 0, 1))).save(path)
    return path


def nifti_header_only(path: Path, shape) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    path.write_bytes(gzip.compress(header.binaryblock + b"\x00" * 4))
    return path


def put_label(url, image_id, path: Path, params=None):
    data = {"params": params} if params is not None else {}
    return requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                        files={"label": (path.name, path.read_bytes())}, data=data, timeout=120)


def infer_file(url, model, path: Path, params=None, output="json"):
    return requests.post(f"{url}/infer/{model}", params={"output": output},
                         files={"file": (path.name, path.read_bytes())},
                         data={"params": json.dumps(params or {})}, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def listed(url) -> set[str]:
    return set(requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"])


def wait_listed(url, ids, timeout=30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while not set(ids) <= (found := listed(url)) and time.monotonic() < deadline:
        time.sleep(0.3)
    return found


# ---- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardening")
    conf = dict(CONF)
    torch.manual_seed(0)
    for name in ("dsanet", "intrasense"):
        conf[f"{name}_pretrained_path"] = str(
            save_checkpoint(tmp / f"init_{name}.pt", build_network(name, "small"), name, "small")
        )
    # no background scoring jobs (MONAI Label starts one at start-up and after every active-learning call)
    srv = start_app_server(tmp, conf)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return MONAILabelClient(server.url, tmpdir=str(server.tmp))


# ---- 1. labels checked before anything is stored -------------------------------------------------------------
def test_rejected_labels_leave_stored_labels_and_counter_untouched(server, client, tmp_path):
    labels_dir = server.studies_dir / "labels" / "final"
    counter = server.studies_dir / COUNTER_FILE
    before, counter_before = snapshot(labels_dir), counter.read_bytes() if counter.exists() else None
    nan = np.full((128, 128, 24), np.nan, np.float32)
    grey = (np.arange(128 * 128 * 24) % 256).astype(np.uint8).reshape(128, 128, 24)
    cases = [  # (image, label file, status, words the message must contain)
        (CINE, nifti(tmp_path / "seven.nii.gz", np.zeros((128, 128, 7), np.uint8)), 422, ["7 frames", "24"]),
        (CINE, nifti(tmp_path / "small.nii.gz", np.zeros((64, 64, 24), np.uint8)), 422, ["(64, 64)", "(128, 128)"]),
        (CINE, nifti(tmp_path / "nan.nii.gz", nan), 422, ["NaN"]),
        (CINE, nifti(tmp_path / "grey.nii.gz", grey), 422, ["[0, 1]", "unexpected value"]),
        (CINE, nifti(tmp_path / "flat.nii.gz", np.zeros((128, 128), np.uint8)), 422, ["24 frames", "(128, 128, 24)"]),
        (CINE, nifti_header_only(tmp_path / "huge.nii.gz", (20000, 20000, 1000)), 413, ["limit"]),
        (IMAGE, png(tmp_path / "tiny.png", np.zeros((17, 3), np.uint8)), 422, ["(17, 3)", "(128, 128)"]),
        (IMAGE, png(tmp_path / "rgb.png", np.zeros((128, 128, 3), np.uint8)), 422, ["one channel"]),
        (IMAGE, png(tmp_path / "mid.png", np.full((128, 128), 128, np.uint8)), 422, ["128"]),
        (IMAGE, nifti(tmp_path / "vol.nii.gz", np.zeros((128, 128, 5), np.uint8)), 422, ["2D", "(128, 128)"]),
    ]
    for image_id, path, status, words in cases:
        r = put_label(server.url, image_id, path)
        assert r.status_code == status, (path.name, r.status_code, r.text[:300])
        for word in words:
            assert word in r.json()["detail"], (path.name, word, r.json()["detail"])
    # MONAI Label's own client gets the same refusal
    with pytest.raises(MONAILabelClientException, match="Status: 422"):
        client.save_label(CINE, str(tmp_path / "seven.nii.gz"), tag="final")
    assert snapshot(labels_dir) == before  # bytes of every stored label unchanged, nothing added
    assert (counter.read_bytes() if counter.exists() else None) == counter_before


def test_valid_labels_are_stored_and_counted(server, client, tmp_path):
    """Positive control: a 0/1 NIfTI cine label and a 0/255 PNG mask (255 = label 1) are accepted and counted."""
    mask = np.zeros((128, 128), np.uint8)
    mask[30:60, 40:90] = 255
    r = put_label(server.url, "image_001", png(tmp_path / "image_001.png", mask))
    assert r.status_code == 200, r.text[:300]
    assert r.json()["new_labels"]["intrasense"] >= 1
    stored = server.studies_dir / "labels" / "final" / "image_001.png"
    assert stored.read_bytes() == (tmp_path / "image_001.png").read_bytes()
    cine_label = np.zeros((128, 128, 24), np.uint8)
    cine_label[20:50, 20:50, :] = 1
    answer = client.save_label("cine_001", str(nifti(tmp_path / "cine_001.nii.gz", cine_label)), tag="final")
    assert answer["new_labels"]["dsanet"] >= 1
    counts = json.loads((server.studies_dir / COUNTER_FILE).read_text())["new_labels"]
    assert counts["dsanet"] >= 1 and counts["intrasense"] >= 1


# ---- sizes and NaN/Inf on every upload path ------------------------------------------------------------------
def test_oversized_uploads_get_413_quickly_without_allocating(server, tmp_path):
    ds = pydicom.dcmread(server.studies_dir / "cine_003.dcm")
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4096, 4096, 1000  # 16.8 G pixels claimed by a ~0.4 MB file
    ds.save_as(tmp_path / "huge.dcm")
    files = [nifti_header_only(tmp_path / "huge.nii.gz", (20000, 20000, 1000)), tmp_path / "huge.dcm"]
    peak_before = peak_rss_mb(server.pid)
    for path in files:
        assert path.stat().st_size < 1_000_000
        start = time.monotonic()
        r = requests.put(f"{server.url}/datastore/image", params={"image": "too_big"},
                         files={"file": (path.name, path.read_bytes())}, timeout=60)
        assert r.status_code == 413 and "limit" in r.json()["detail"], r.text[:300]
        for model in ("dsanet", "intrasense"):
            r = infer_file(server.url, model, path)
            assert r.status_code == 413, (model, path.name, r.status_code, r.text[:300])
        assert time.monotonic() - start < 10, path.name
    # the corrected label sent with a refinement request
    huge_label = files[0]
    r = requests.post(f"{server.url}/infer/dsanet_refine", params={"image": "cine_003", "output": "json"},
                      files={"label": (huge_label.name, huge_label.read_bytes())},
                      data={"params": json.dumps({"corrected_frames": [0]})}, timeout=120)
    assert r.status_code == 413 and "label" in r.json()["detail"], r.text[:300]
    assert peak_rss_mb(server.pid) - peak_before < 300  # nothing near the claimed size was allocated
    assert "too_big" not in listed(server.url)


def test_nan_and_inf_images_are_refused_at_upload_and_infer(server, client, tmp_path):
    for value in (np.nan, np.inf):
        cine = np.ones((64, 64, 4), np.float32)
        cine[3, 5, 1] = value
        path = nifti(tmp_path / "poisoned.nii.gz", cine)
        with pytest.raises(MONAILabelClientException, match="Status: 422"):
            client.upload_image(str(path), image_id="poisoned")
        r = infer_file(server.url, "dsanet", path)
        assert r.status_code == 422 and "NaN or infinite" in r.json()["detail"], r.text[:300]
    assert "poisoned" not in listed(server.url)
    assert not list(server.studies_dir.glob("poisoned*"))


# ---- 2. every request answered < 500 -------------------------------------------------------------------------
def test_malformed_requests_get_4xx(server, tmp_path):
    url = server.url
    for params in ("{bad", "[1, 2]", '"text"', "3", "null"):
        r = requests.post(f"{url}/infer/intrasense", params={"image": IMAGE}, data={"params": params}, timeout=60)
        assert r.status_code == 422 and "params" in r.json()["detail"], (params, r.status_code, r.text[:200])
    r = requests.post(f"{url}/infer/intrasense", data={"params": "{}"}, timeout=60)
    assert r.status_code == 400 and "no image" in r.json()["detail"]
    image = server.studies_dir / "image_002.png"
    r = requests.put(f"{url}/datastore/image", params={"image": "x_params"}, data={"params": "[1]"},
                     files={"file": (image.name, image.read_bytes())}, timeout=60)
    assert r.status_code == 422 and "x_params" not in listed(url)
    label = server.studies_dir / "labels" / "final" / "image_002.png"
    before = label.read_bytes()
    r = put_label(url, "image_002", label, params="not json")
    assert r.status_code == 422 and label.read_bytes() == before
    r = requests.put(f"{url}/datastore/image/info", params={"image": IMAGE}, data={"info": "[]"}, timeout=60)
    assert r.status_code == 422
    r = requests.post(f"{url}/scoring/no_such_method", timeout=60)
    assert r.status_code == 404 and "temporal_disagreement" in r.json()["detail"]
    tasks = requests.get(f"{url}/scoring/", params={"all": True}, timeout=30)
    queued = tasks.json() if tasks.status_code == 200 else []
    assert not any(t.get("request", {}).get("method") == "no_such_method" for t in queued)
    r = requests.post(f"{url}/activelearning/no_such_strategy", json={}, timeout=60)
    assert r.status_code == 404


def test_png_65535_by_1_through_the_image_model(server, client, tmp_path):
    path = png(tmp_path / "wide.png", np.zeros((65535, 1), np.uint8))
    result, params = client.infer("intrasense", "", {}, file=str(path))
    assert params["shape"] == [65535, 1]
    assert Image.open(result).size == (65535, 1)
    r = infer_file(server.url, "intrasense", path, {"result_extension": ".nii.gz"})
    assert r.status_code == 422 and ".nrrd" in r.json()["detail"], r.text[:300]
    r = infer_file(server.url, "intrasense", path, {"result_extension": ".nrrd"})
    assert r.status_code == 200, r.text[:300]


def test_model_upload_accepts_only_working_checkpoints(server, tmp_path):
    url = server.url
    live = server.app_dir / "model" / "intrasense.pt"

    def prediction() -> bytes:
        r = requests.post(f"{url}/infer/intrasense", params={"image": IMAGE, "output": "image"}, timeout=300)
        assert r.status_code == 200, r.text[:300]
        return r.content

    def upload(path: Path, model="intrasense"):
        return requests.put(f"{url}/model/{model}", files={"file": (path.name, path.read_bytes())}, timeout=300)

    live_before = live.read_bytes() if live.exists() else None
    predicted = prediction()
    torch.manual_seed(1)
    good = build_network("intrasense", "small")
    state = good.state_dict()
    key = next(k for k, v in state.items() if v.ndim == 4)
    bad_files = {}
    bad_files["garbage"] = tmp_path / "garbage.pt"
    bad_files["garbage"].write_bytes(b"this is not a checkpoint" * 10)
    bad_files["pickled_code"] = tmp_path / "code.pt"
    torch.save({"network": "intrasense", "config": "small", "state_dict": state, "x": Evil()},
               bad_files["pickled_code"])
    bad_files["other_network"] = save_checkpoint(tmp_path / "dsanet.pt", build_network("dsanet", "small"),
                                                 "dsanet", "small")
    for name, change in {
        "wrong_shape": lambda s: s.__setitem__(key, torch.zeros(3, 3, 3, 3)),
        "missing_key": lambda s: s.pop(key),
        "extra_key": lambda s: s.__setitem__("extra.weight", torch.zeros(2)),
        "nan_weights": lambda s: [v.fill_(float("nan")) for v in s.values() if v.is_floating_point()],
    }.items():
        copy = {k: v.clone() for k, v in state.items()}
        change(copy)
        bad_files[name] = tmp_path / f"{name}.pt"
        torch.save({"network": "intrasense", "config": "small", "overrides": {}, "state_dict": copy},
                   bad_files[name])
    for name, path in bad_files.items():
        r = upload(path)
        assert r.status_code == 422, (name, r.status_code, r.text[:300])
        assert r.json()["detail"], name
        assert (live.read_bytes() if live.exists() else None) == live_before, name
    assert "this must never run" not in server.log_text()
    assert prediction() == predicted  # the live model is unchanged after every refusal
    assert upload(bad_files["garbage"], model="no_such_model").status_code == 404
    good_file = save_checkpoint(tmp_path / "good.pt", good, "intrasense", "small")
    r = upload(good_file)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["checked"]["probe"] == "finite"
    assert live.read_bytes() == good_file.read_bytes()
    answer = requests.post(f"{url}/infer/intrasense", params={"image": IMAGE, "output": "json"}, timeout=300).json()
    assert answer["model"]["weights"] == "intrasense.pt"  # hot-loaded, no restart


def test_delete_model_removes_only_the_apps_own_checkpoint_and_says_what_serves_next(server, tmp_path):
    """MONAI Label 0.8.5 renames whatever file the model uses, the user's own ``pretrained_path`` file included,
    and then keeps serving its weights from memory."""
    url = server.url
    pretrained = Path(server.conf["dsanet_pretrained_path"])
    before = pretrained.read_bytes()
    r = requests.delete(f"{url}/model/dsanet", timeout=60)  # only the pretrained file is in use
    assert r.status_code == 409 and "pretrained" in r.json()["detail"], r.text[:300]
    assert pretrained.read_bytes() == before and not list(pretrained.parent.glob(f"{pretrained.name}.*.deleted"))
    assert requests.delete(f"{url}/model/no_such_model", timeout=60).status_code == 404

    torch.manual_seed(2)
    trained = save_checkpoint(tmp_path / "trained.pt", build_network("intrasense", "small"), "intrasense", "small")
    assert requests.put(f"{url}/model/intrasense", files={"file": ("t.pt", trained.read_bytes())},
                        timeout=300).status_code == 200

    def served() -> str:
        answer = requests.post(f"{url}/infer/intrasense", params={"image": IMAGE, "output": "json"}, timeout=300)
        assert answer.status_code == 200, answer.text[:300]
        return answer.json()["model"]["weights"]

    assert served() == "intrasense.pt"
    r = requests.delete(f"{url}/model/intrasense", timeout=60)
    assert r.status_code == 200, r.text[:300]
    fallback = Path(server.conf["intrasense_pretrained_path"]).name
    assert r.json()["now_serving"] == fallback and r.json()["deleted"] == "intrasense.pt"
    assert not (server.app_dir / "model" / "intrasense.pt").exists()
    assert (server.app_dir / "model" / r.json()["moved_to"]).is_file()  # kept aside, as MONAI Label does
    assert served() == fallback  # the next request uses the pretrained weights, not the deleted ones
    assert requests.delete(f"{url}/model/intrasense", timeout=60).status_code == 409  # now the pretrained is in use


def test_delete_label_that_is_not_stored_is_404(server, client, tmp_path):
    url = server.url
    for label_id in ("../x", "no_such_label", IMAGE):  # IMAGE exists but has no label with this tag
        r = requests.delete(f"{url}/datastore/label", params={"id": label_id, "tag": "no_such_tag"}, timeout=60)
        assert r.status_code == 404, (label_id, r.status_code, r.text[:200])
    r = requests.delete(f"{url}/datastore/label", params={"id": "../x", "tag": "final"}, timeout=60)
    assert r.status_code == 404 and "no label" in r.json()["detail"]


# ---- 5. active learning and scoring survive bad studies --------------------------------------------------------
def _wait_no_scoring(url, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(f"{url}/scoring/", params={"check_if_running": True}, timeout=30)
        if r.status_code != 200:
            return
        time.sleep(0.5)
    raise TimeoutError("a scoring task is still running")


def test_active_learning_and_scoring_skip_poisoned_studies(server, client):
    studies = server.studies_dir
    nan_cine = np.ones((64, 64, 6), np.float32)
    nan_cine[:, :, 2] = np.nan
    nifti(studies / "poison_nan.nii.gz", nan_cine)  # as if it had entered before uploads were checked
    raw = (studies / "cine_003.dcm").read_bytes()
    (studies / "poison_truncated.dcm").write_bytes(raw[: len(raw) // 3])
    assert {"poison_nan", "poison_truncated"} <= wait_listed(server.url, ["poison_nan", "poison_truncated"])

    r = requests.post(f"{server.url}/activelearning/temporal_uncertainty", json={"max_candidates": 500}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    answer = r.json()
    assert answer["id"] == "cine_003", answer  # the one readable unlabelled cine
    skipped = {s["id"]: s["reason"] for s in answer["skipped"]}
    assert {"poison_nan", "poison_truncated"} <= set(skipped), answer["skipped"]
    assert "NaN" in skipped["poison_nan"]
    assert client.next_sample("temporal_uncertainty", {"max_candidates": 500})["id"] == "cine_003"

    _wait_no_scoring(server.url)
    r = requests.post(f"{server.url}/scoring/temporal_disagreement", params={"run_sync": True}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    result = r.json()
    assert "cine_003" in result["scores"]
    assert {"poison_nan", "poison_truncated"} <= {s["id"] for s in result["skipped"]}


# ---- 6. the datastore watcher survives a burst of uploads ------------------------------------------------------
def test_watcher_keeps_listing_new_files_after_50_rapid_uploads(server):
    data = (server.studies_dir / "image_003.png").read_bytes()

    def upload(i):
        return requests.put(f"{server.url}/datastore/image", params={"image": f"burst_{i:02d}"},
                            files={"file": (f"burst_{i:02d}.png", data)}, timeout=120).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(upload, range(50)))
    assert codes == [200] * 50
    shutil.copy(server.studies_dir / "image_002.png", server.studies_dir / "copied_later.png")
    found = wait_listed(server.url, ["copied_later"])
    assert "copied_later" in found, "a file copied into the studies folder was never listed"
    assert {f"burst_{i:02d}" for i in range(50)} <= found
    log = server.log_text()
    assert "dictionary changed size" not in log
    assert "datastore watcher: failed" not in log
