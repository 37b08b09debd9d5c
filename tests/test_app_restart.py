"""Labels survive a ``kill -9`` of the server in the middle of a save, and a restarted server has every label."""

from __future__ import annotations

import threading

import nibabel as nib
import numpy as np
import pytest
import requests
from server_utils import MonaiLabelServer, copy_app, copy_studies

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _label(shape, value, path):
    arr = np.zeros(shape, np.uint8)
    arr[: shape[0] // 2] = value
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))
    return arr


def test_kill_9_mid_save_keeps_labels(tmp_path):
    app = copy_app(tmp_path / "app")
    studies = copy_studies(tmp_path / "studies")
    cine = sorted(studies.glob("cine_*.dcm"))[0]
    image_id = cine.stem
    from usseg_models.io import load_image

    shape = load_image(cine)[0].shape[:3]
    conf = {"models": "intrasense", "config": "small", "auto_retrain_after": "0"}
    server = MonaiLabelServer(app, studies, conf=conf)
    server.start()
    try:
        before = sorted(p.name for p in (studies / "labels" / "final").iterdir())
        v1 = _label(shape, 1, tmp_path / "v1.nii.gz")
        r = requests.put(f"{server.url}/datastore/label", params={"image": image_id},
                         files={"label": ("v1.nii.gz", (tmp_path / "v1.nii.gz").read_bytes())}, timeout=60)
        assert r.status_code == 200, r.text[:300]
        # a second version of the right shape, uncompressed: the kill lands while it is uploaded, checked or written
        big = np.random.default_rng(0).integers(0, 2, tuple(shape), dtype=np.uint8)
        nib.save(nib.Nifti1Image(big, np.eye(4)), str(tmp_path / "v2.nii"))
        payload = (tmp_path / "v2.nii").read_bytes()

        def save_v2():
            try:
                requests.put(f"{server.url}/datastore/label", params={"image": image_id},
                             files={"label": ("v2.nii", payload)}, timeout=60)
            except requests.RequestException:
                pass

        t = threading.Thread(target=save_v2)
        t.start()
        server.kill()
        t.join(timeout=60)
    finally:
        server.stop()

    final = studies / "labels" / "final"
    assert not list(final.glob("*.part")) or all(p.name.startswith(".tmp-") for p in final.glob("*.part"))
    saved = [p for p in final.iterdir() if p.name.startswith(image_id + ".")]
    assert saved, "the label is gone"
    for path in saved:  # old or new version, never a torn file
        got = load_image(path)[0]
        assert np.array_equal(got, v1) or np.array_equal(got, big), path

    server = MonaiLabelServer(app, studies, conf=conf)
    server.start()
    try:
        listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=60).json()
        labelled = {k for k, v in listing["objects"].items() if v["labels"].get("final")}
        expected = {n.split(".")[0] for n in before} | {image_id}
        assert expected <= labelled
        r = requests.get(f"{server.url}/datastore/label", params={"label": image_id, "tag": "final"}, timeout=60)
        assert r.status_code == 200 and r.content in [p.read_bytes() for p in saved]
    finally:
        server.stop()
