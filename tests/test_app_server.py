"""The MONAI Label app in a real server process answering ``/info`` and inference, by its own client and raw HTTP.

Cines by id, NIfTI volumes, PNG and DICOM images in; labels with the source's geometry and UIDs, ``.seg.nrrd``
for Slicer, many requests at once, and the server benchmark against it. The server (one for every
``test_app_server*.py`` module) and the helpers are in :mod:`app_server_fixtures` (``split_multipart`` is also
imported from here by ``test_app_orthanc``); bad requests, labelling and training have modules of their own.
"""

from __future__ import annotations

import concurrent.futures
import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
from app_server_fixtures import load, make_volume_nifti, multipart_infer, split_multipart
from PIL import Image

pytestmark = [pytest.mark.server, pytest.mark.slow]


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


def test_bench_server_against_running_server(server):
    from usseg_models.bench.server import bench_server

    info = bench_server(frames=8, size=64, repeats=2, warmup=0, url=server.url)
    assert info["label_shape"] == [64, 64, 8]
    assert len(info["seconds"]) == 2 and all(s > 0 for s in info["seconds"])
    assert info["server_latencies"]["total"] <= max(info["seconds"])  # server time is part of the round trip
    with pytest.raises(ValueError):
        bench_server(repeats=0, url=server.url)
