"""The MONAI Label app in a real server process refusing bad requests with a 4xx and carrying on.

Malformed or unsupported uploads to both models, an image to the cine model and the reverse, unknown models and
images, ids and tags that are paths: each gets a 4xx with a message, nothing is stored, the server keeps
answering. The server is the one of every ``test_app_server*.py`` module (:mod:`app_server_fixtures`).
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
from app_server_fixtures import multipart_infer

pytestmark = [pytest.mark.server, pytest.mark.slow]


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


#: MONAI Label's temporary copy of an upload (``NamedTemporaryFile(suffix=...).name``), in any temp folder
TEMP_COPY = re.compile(r"/tmp[a-z0-9_]{8}(\.|\b)")


def assert_names_the_upload(detail: str, uploaded: str) -> None:
    """An error about an uploaded file names it as the user sent it, never by the server's temporary copy."""
    assert not TEMP_COPY.search(detail), f"the message names the server's temporary copy: {detail}"
    if "/" in detail:  # a message that names a path at all names this file
        assert uploaded in detail, f"{uploaded} not named in: {detail}"


def assert_alive(url):
    r = requests.get(f"{url}/info/", timeout=30)
    assert r.status_code == 200


def test_bad_uploads_get_4xx_and_server_survives(server, image_dcm, cine_id, tmp_path):
    labels_before = {p.name: p.read_bytes() for p in (server.studies_dir / "labels" / "final").iterdir()}
    files = bad_uploads(tmp_path / "bad", image_dcm, server.studies_dir / f"{cine_id}.dcm")
    for what, path in files.items():
        for model in ("dsanet", "intrasense"):
            r = multipart_infer(server.url, model, path)
            assert 400 <= r.status_code < 500, f"{what} on {model}: HTTP {r.status_code} {r.text[:300]}"
            assert r.json().get("detail"), f"{what}: no message"
            assert_names_the_upload(r.json()["detail"], path.name)
        assert_alive(server.url)
    # wrong dimensionality: an image to the cine model and a cine to the image model
    r = multipart_infer(server.url, "dsanet", image_dcm)
    assert r.status_code == 422 and "needs a cine" in r.json()["detail"] and "got one image of" in r.json()["detail"]
    r = multipart_infer(server.url, "intrasense", server.studies_dir / f"{cine_id}.dcm")
    assert r.status_code == 422 and "2D" in r.json()["detail"] and "got a cine of" in r.json()["detail"]
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
    assert_names_the_upload(r.json()["detail"], "t.dcm")
    with open(files["not_dicom"], "rb") as f:
        r = requests.put(
            f"{server.url}/datastore/label", params={"image": cine_id}, files={"label": ("l.nii.gz", f)}
        )
    assert 400 <= r.status_code < 500
    assert_names_the_upload(r.json()["detail"], "l.nii.gz")
    with open(files["four_d"], "rb") as f:  # a label the reader refuses names the user's file
        r = requests.put(f"{server.url}/datastore/label", params={"image": cine_id},
                         files={"label": ("my_label.nii.gz", f)})
    assert r.status_code == 422 and r.json()["detail"].startswith("my_label.nii.gz: "), r.text[:300]
    for params in ({"image": "../" + cine_id}, {"image": cine_id, "tag": "../../escape"}):
        r = requests.put(f"{server.url}/datastore/label", params=params,
                         files={"label": ("l.nii.gz", b"\x00" * 10)})
        assert r.status_code == 400, (params, r.status_code, r.text[:200])
    assert not (server.studies_dir.parent / "escape").exists()
    assert_alive(server.url)
    labels_after = {p.name: p.read_bytes() for p in (server.studies_dir / "labels" / "final").iterdir()}
    assert labels_after == labels_before
