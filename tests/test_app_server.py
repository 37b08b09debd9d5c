"""The MONAI Label app in a real server process, driven by MONAI Label's own client and raw HTTP.

One server per module (start-up takes several seconds) on a temporary copy of the bundled sample studies.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from server_utils import MonaiLabelServer, copy_app, copy_studies

pytestmark = [pytest.mark.server, pytest.mark.slow]

monailabel_client = pytest.importorskip("monailabel.client")
MONAILabelClient = monailabel_client.MONAILabelClient

# val_split 0: no validation pass, to keep the two training runs short on CPU
CONF = {
    "models": "dsanet,intrasense", "config": "small", "auto_retrain_after": "2", "max_epochs": "1", "val_split": "0",
}


# ---- helpers -----------------------------------------------------------------------------------------------
def load(path):
    from usseg_models.io import load_image

    return load_image(path)


def multipart_infer(url, model, path, params=None, image_id="", timeout=300):
    with open(path, "rb") as f:
        return requests.post(
            f"{url}/infer/{model}",
            params={"image": image_id, "output": "all"} if image_id else {"output": "all"},
            files={"file": (Path(path).name, f)},
            data={"params": json.dumps(params or {})},
            timeout=timeout,
        )


def split_multipart(response, tmp_path: Path, name: str) -> tuple[Path, dict]:
    """Decode MONAI Label's multipart infer answer into (result file, params)."""
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    params, out = None, None
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers.get(b"Content-Disposition", b"").decode()
        if 'name="params"' in disposition:
            params = json.loads(part.content)
        elif 'name="image"' in disposition:
            filename = disposition.split("filename=")[-1].strip('"')
            suffix = "".join(Path(filename).suffixes[-2:]) if filename.endswith(".gz") else Path(filename).suffix
            if filename.endswith(".seg.nrrd"):
                suffix = ".seg.nrrd"
            out = tmp_path / f"{name}{suffix}"
            out.write_bytes(part.content)
    assert params is not None and out is not None, response.text[:500]
    return out, params


def studies_of(folder: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in folder.glob(pattern))


def make_volume_nifti(src_dcm: Path, dest: Path, one_slice: bool = False) -> np.ndarray:
    """Write the cine (or its first frame as one slice) as NIfTI with a non-trivial affine; return the affine."""
    arr, meta = load(src_dcm)
    if meta.get("original_channel_dim") == -1:
        arr = arr[..., 0]
    if one_slice:
        arr = arr[:, :, :1] if arr.ndim == 3 else arr[:, :, None]
    affine = np.array(
        [[0.0, -0.25, 0.0, 12.5], [0.3, 0.0, 0.0, -7.0], [0.0, 0.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0]]
    )
    nib.save(nib.Nifti1Image(arr.astype(np.uint8), affine), str(dest))
    return affine


def bad_uploads(folder: Path, good_dicom: Path, good_cine: Path) -> dict[str, Path]:
    """Malformed files a client might send, keyed by what is wrong with them."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    files["not_dicom"] = folder / "not_dicom.dcm"
    files["not_dicom"].write_bytes(b"this is not a DICOM file at all\n" * 64)
    files["empty"] = folder / "empty.dcm"
    files["empty"].write_bytes(b"")
    raw = good_cine.read_bytes()
    files["truncated"] = folder / "truncated.dcm"
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    ds = pydicom.dcmread(good_dicom)
    ds.BitsAllocated = 7
    files["bits7"] = folder / "bits7.dcm"
    ds.save_as(files["bits7"])
    ds = pydicom.dcmread(good_cine)
    ds.NumberOfFrames = 0
    files["zero_frames"] = folder / "zero_frames.dcm"
    ds.save_as(files["zero_frames"])
    ds = pydicom.dcmread(good_cine)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 100000
    files["absurd_size"] = folder / "absurd_size.dcm"
    ds.save_as(files["absurd_size"])
    files["png_garbage"] = folder / "garbage.png"
    files["png_garbage"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    four_d = folder / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 2), np.uint8), np.eye(4)), str(four_d))
    files["four_d"] = four_d
    return files


# ---- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app_server")
    app = copy_app(tmp / "app")
    studies = copy_studies(tmp / "studies")
    # the last two PNG images start unlabelled; their labels are what a user submits later
    held = tmp / "held_out"
    held.mkdir()
    for label in sorted((studies / "labels" / "final").glob("image_*.png"))[-2:]:
        shutil.move(str(label), held / label.name)
    srv = MonaiLabelServer(app, studies, conf=CONF)
    srv.start()
    srv.studies_dir = studies
    srv.tmp = tmp
    srv.held_out = held
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return MONAILabelClient(server.url, tmpdir=str(server.tmp / "client"))


@pytest.fixture(scope="module")
def cine_id(server):
    ids = studies_of(server.studies_dir, "cine_*.dcm")
    assert ids, f"no cines in {server.studies_dir}"
    return ids[0][: -len(".dcm")]


@pytest.fixture(scope="module")
def image_png(server):
    return sorted(server.studies_dir.glob("image_*.png"))[0]


@pytest.fixture(scope="module")
def image_dcm(server):
    return sorted(server.studies_dir.glob("imagedcm_*.dcm"))[0]


def assert_alive(url):
    r = requests.get(f"{url}/info/", timeout=30)
    assert r.status_code == 200


# ---- tests -------------------------------------------------------------------------------------------------
def test_info_lists_both_models_with_labels(client):
    info = client.info()
    assert set(info["models"]) == {"dsanet", "dsanet_refine", "intrasense"}
    assert info["models"]["dsanet"]["labels"] == {"lesion": 1}
    assert info["models"]["dsanet_refine"]["labels"] == {"lesion": 1}
    assert info["models"]["dsanet_refine"]["refine"]["max_concurrent"] == 1
    assert info["models"]["intrasense"]["labels"] == {"tumor": 1}
    assert info["models"]["dsanet"]["network"]["config"] == "small"
    assert {"random", "first", "temporal_uncertainty"} <= set(info["strategies"])
    assert "temporal_disagreement" in info["scoring"]
    assert set(info["trainers"]) == {"dsanet", "intrasense"}
    assert info["usseg"]["dsanet"]["auto_retrain_after"] == 2


def test_infer_cine_by_id_keeps_geometry_and_uids(client, server, cine_id, tmp_path):
    src = server.studies_dir / f"{cine_id}.dcm"
    arr, meta = load(src)
    label_file, params = client.infer("dsanet", cine_id, {})
    label, lmeta = load(label_file)
    assert label.shape == tuple(arr.shape[:3])
    np.testing.assert_allclose(lmeta["affine"], meta["affine"], atol=1e-5)
    assert set(np.unique(label)) <= {0, 1}
    assert params["label_names"] == {"lesion": 1}
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    assert params["source"]["SeriesInstanceUID"] == ds.SeriesInstanceUID
    assert params["source"]["StudyInstanceUID"] == ds.StudyInstanceUID
    assert params["source"]["SOPInstanceUID"] == ds.SOPInstanceUID
    assert params["source"]["NumberOfFrames"] == int(ds.NumberOfFrames) == arr.shape[2]


def test_infer_cine_nifti_volume_keeps_geometry(server, cine_id, tmp_path):
    vol = tmp_path / "clip.nii.gz"
    affine = make_volume_nifti(server.studies_dir / f"{cine_id}.dcm", vol)
    r = multipart_infer(server.url, "dsanet", vol)
    assert r.status_code == 200, r.text[:500]
    out, params = split_multipart(r, tmp_path, "label")
    img = nib.load(str(vol))
    lab = nib.load(str(out))
    assert lab.shape == img.shape
    np.testing.assert_allclose(lab.affine, affine, atol=1e-5)
    np.testing.assert_allclose(lab.header.get_zooms(), img.header.get_zooms(), atol=1e-5)
    assert "source" not in params  # no DICOM UIDs for a NIfTI upload


def test_infer_image_png_returns_png(server, image_png, tmp_path):
    r = multipart_infer(server.url, "intrasense", image_png)
    assert r.status_code == 200, r.text[:500]
    out, params = split_multipart(r, tmp_path, "label")
    assert out.suffix == ".png"
    src, res = Image.open(image_png), Image.open(out)
    assert res.size == src.size and res.mode == "L"
    assert set(np.unique(np.asarray(res))) <= {0, 1}
    assert params["label_names"] == {"tumor": 1}


def test_infer_image_dicom_and_one_slice_nifti(server, image_dcm, tmp_path):
    arr, meta = load(image_dcm)
    r = multipart_infer(server.url, "intrasense", image_dcm)
    assert r.status_code == 200, r.text[:500]
    out, params = split_multipart(r, tmp_path, "dcm_label")
    label, lmeta = load(out)
    assert label.shape[:2] == arr.shape[:2]
    np.testing.assert_allclose(lmeta["affine"], meta["affine"], atol=1e-5)
    assert params["source"]["SOPInstanceUID"] == pydicom.dcmread(image_dcm).SOPInstanceUID

    vol = tmp_path / "slice.nii.gz"
    affine = make_volume_nifti(image_dcm, vol, one_slice=True)
    r = multipart_infer(server.url, "intrasense", vol)
    assert r.status_code == 200, r.text[:500]
    out, _ = split_multipart(r, tmp_path, "slice_label")
    lab = nib.load(str(out))
    assert lab.shape == nib.load(str(vol)).shape == arr.shape[:2] + (1,)
    np.testing.assert_allclose(lab.affine, affine, atol=1e-5)


def test_seg_nrrd_output_read_by_slicerio(server, cine_id, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    r = requests.post(
        f"{server.url}/infer/dsanet",
        params={"image": cine_id, "output": "all"},
        data={"params": json.dumps({"result_extension": ".seg.nrrd"})},
        timeout=300,
    )
    assert r.status_code == 200, r.text[:500]
    out, params = split_multipart(r, tmp_path, "seg")
    assert out.name.endswith(".seg.nrrd")
    seg = slicerio.read_segmentation(str(out))
    segments = seg["segments"]
    assert [s["name"] for s in segments] == ["lesion"]
    assert segments[0]["labelValue"] == 1
    np.testing.assert_allclose(segments[0]["color"], [1.0, 0.2, 0.2], atol=1e-4)
    arr, _ = load(server.studies_dir / f"{cine_id}.dcm")
    assert tuple(seg["voxels"].shape) == tuple(arr.shape[:3])


def test_bad_uploads_get_4xx_and_server_survives(server, image_dcm, cine_id, tmp_path):
    labels_before = {p.name: p.read_bytes() for p in (server.studies_dir / "labels" / "final").iterdir()}
    files = bad_uploads(tmp_path / "bad", image_dcm, server.studies_dir / f"{cine_id}.dcm")
    for what, path in files.items():
        for model in ("dsanet", "intrasense"):
            r = multipart_infer(server.url, model, path)
            assert 400 <= r.status_code < 500, f"{what} on {model}: HTTP {r.status_code} {r.text[:300]}"
            assert r.json().get("detail"), f"{what}: no message"
        assert_alive(server.url)
    # wrong dimensionality: an image to the cine model and a cine to the image model
    r = multipart_infer(server.url, "dsanet", image_dcm)
    assert r.status_code == 422 and "cine" in r.json()["detail"]
    r = multipart_infer(server.url, "intrasense", server.studies_dir / f"{cine_id}.dcm")
    assert r.status_code == 422 and "2D" in r.json()["detail"]
    # wrong model, ids with paths, server-side paths
    r = multipart_infer(server.url, "nosuchmodel", image_dcm)
    assert r.status_code == 404 and "nosuchmodel" in r.json()["detail"]
    for bad_id in ("../etc/passwd", "a/b", "..", "/etc/passwd"):
        r = requests.post(f"{server.url}/infer/intrasense", params={"image": bad_id}, timeout=30)
        assert 400 <= r.status_code < 500, (bad_id, r.status_code, r.text[:200])
    r = requests.post(f"{server.url}/infer/intrasense", params={"image": "no_such_image"}, timeout=30)
    assert r.status_code == 404
    # uploads and labels with bad ids or bad files
    with open(files["not_dicom"], "rb") as f:
        r = requests.put(f"{server.url}/datastore/image", params={"image": "../evil"}, files={"file": ("x.dcm", f)})
    assert r.status_code == 400
    with open(files["truncated"], "rb") as f:
        r = requests.put(f"{server.url}/datastore/image", params={"image": "trunc"}, files={"file": ("t.dcm", f)})
    assert 400 <= r.status_code < 500
    with open(files["not_dicom"], "rb") as f:
        r = requests.put(
            f"{server.url}/datastore/label", params={"image": cine_id}, files={"label": ("l.nii.gz", f)}
        )
    assert 400 <= r.status_code < 500
    for params in ({"image": "../" + cine_id}, {"image": cine_id, "tag": "../../escape"}):
        r = requests.put(f"{server.url}/datastore/label", params=params,
                         files={"label": ("l.nii.gz", b"\x00" * 10)})
        assert r.status_code == 400, (params, r.status_code, r.text[:200])
    assert not (server.studies_dir.parent / "escape").exists()
    assert_alive(server.url)
    labels_after = {p.name: p.read_bytes() for p in (server.studies_dir / "labels" / "final").iterdir()}
    assert labels_after == labels_before


def test_concurrent_infer_requests(server, image_png, cine_id):
    def one(i):
        if i % 4 == 0:
            r = requests.post(f"{server.url}/infer/dsanet", params={"image": cine_id, "output": "json"}, timeout=600)
        else:
            with open(image_png, "rb") as f:
                r = requests.post(
                    f"{server.url}/infer/intrasense", params={"output": "json"},
                    files={"file": (image_png.name, f)}, timeout=600,
                )
        return i, r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    cine_shape = list(load(server.studies_dir / f"{cine_id}.dcm")[0].shape[:3])
    png_shape = list(load(image_png)[0].shape[:2])
    for i, status, body in results:
        assert status == 200, (i, body)
        assert body["shape"] == (cine_shape if i % 4 == 0 else png_shape)


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


def test_bench_server_against_running_server(server):
    from usseg_models.bench.server import bench_server

    info = bench_server(frames=8, size=64, repeats=2, warmup=0, url=server.url)
    assert info["label_shape"] == [64, 64, 8]
    assert len(info["seconds"]) == 2 and all(s > 0 for s in info["seconds"])
    assert info["server_latencies"]["total"] <= max(info["seconds"])  # server time is part of the round trip
    with pytest.raises(ValueError):
        bench_server(repeats=0, url=server.url)
