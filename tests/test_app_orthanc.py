"""PACS flow: a real Orthanc with DICOMweb, ultrasound cines uploaded by STOW-RS, the app reading them.

The server lists only US series (``MONAI_LABEL_DICOMWEB_SEARCH_FILTER``), segments a cine fetched by WADO-RS,
and stores the saved label locally keyed by SeriesInstanceUID (MONAI Label's DICOM SEG export fails for US).
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import requests
from pydicom.uid import generate_uid
from server_utils import MonaiLabelServer, copy_app, dicomweb_plugin, orthanc_binary, running_orthanc

pytestmark = [pytest.mark.server, pytest.mark.orthanc, pytest.mark.slow]

if not orthanc_binary() or not dicomweb_plugin():
    pytest.skip("Orthanc + DICOMweb plugin not installed (apt-get install orthanc orthanc-dicomweb)",
                allow_module_level=True)


def _stow(url: str, datasets) -> None:
    from dicomweb_client.api import DICOMwebClient

    DICOMwebClient(url=url).store_instances(datasets)


def _copy_with_new_uids(path, modality=None):
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if modality:
        ds.Modality = modality
    return ds


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    from server_utils import copy_studies

    tmp = tmp_path_factory.mktemp("pacs")
    studies = copy_studies(tmp / "studies")
    cines = sorted(studies.glob("cine_*.dcm"))[:2]
    assert len(cines) == 2
    with running_orthanc(tmp / "orthanc") as (dicomweb, pid):
        us = [_copy_with_new_uids(c) for c in cines]
        other = _copy_with_new_uids(sorted(studies.glob("imagedcm_*.dcm"))[0], modality="CT")
        _stow(dicomweb, us + [other])
        app = copy_app(tmp / "app")
        server = MonaiLabelServer(
            app, dicomweb, conf={"models": "dsanet", "config": "small", "auto_retrain_after": "0"},
            env={"MONAI_LABEL_DICOMWEB_SEARCH_FILTER": json.dumps({"Modality": "US"})},
        )
        server.start()
        try:
            yield {"server": server, "us": us, "other": other, "cines": cines, "orthanc_pid": pid}
        finally:
            server.stop()


def test_lists_only_ultrasound_series(pacs):
    url = pacs["server"].url
    status = requests.get(f"{url}/datastore/", timeout=60).json()
    assert status["total"] == 2
    first = requests.post(f"{url}/activelearning/first", json={}, timeout=60).json()
    assert first["id"] in {str(ds.SeriesInstanceUID) for ds in pacs["us"]}
    assert first["id"] != str(pacs["other"].SeriesInstanceUID)


def test_infer_cine_from_pacs_and_save_label_locally(pacs, tmp_path):
    server = pacs["server"]
    ds = pacs["us"][0]
    series = str(ds.SeriesInstanceUID)
    r = requests.post(f"{server.url}/infer/dsanet", params={"image": series, "output": "all"}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    from test_app_server import split_multipart

    out, params = split_multipart(r, tmp_path, "pacs_label")
    from usseg_models.io import load_image

    label, _ = load_image(out)
    assert label.shape == (int(ds.Columns), int(ds.Rows), int(ds.NumberOfFrames))
    assert params["source"]["SeriesInstanceUID"] == series
    assert params["source"]["SOPInstanceUID"] == str(ds.SOPInstanceUID)
    assert params["source"]["NumberOfFrames"] == int(ds.NumberOfFrames)

    with open(out, "rb") as f:
        r = requests.put(
            f"{server.url}/datastore/label", params={"image": series, "tag": "final"},
            files={"label": (f"{series}.nii.gz", f)},
            data={"params": json.dumps({"label_info": [{"name": "lesion", "idx": 1}]})}, timeout=120,
        )
    assert r.status_code == 200, r.text[:500]
    cache = server.app_dir / "dicom-cache"
    saved = list(cache.rglob(f"labels/final/{series}.nii.gz"))
    assert len(saved) == 1
    assert np.array_equal(load_image(saved[0])[0], label)
    # the labelled series is no longer offered for labelling
    nxt = requests.post(f"{server.url}/activelearning/first", json={}, timeout=60).json()
    assert nxt["id"] == str(pacs["us"][1].SeriesInstanceUID)
    got = requests.get(f"{server.url}/datastore/label", params={"label": series, "tag": "final"}, timeout=60)
    assert got.status_code == 200 and got.content == saved[0].read_bytes()


def test_unknown_series_is_404(pacs):
    url = pacs["server"].url
    r = requests.post(f"{url}/infer/dsanet", params={"image": "1.2.3.4.5.6.7"}, timeout=60)
    assert r.status_code == 404, r.text[:300]
    r = requests.post(f"{url}/infer/dsanet", params={"image": str(pacs["other"].SeriesInstanceUID)}, timeout=60)
    assert r.status_code == 404, r.text[:300]  # a CT series is filtered out
