"""MP4 cines through a real MONAI Label server: uploaded with MONAI Label's client and segmented by /infer/dsanet
with the clip's frame count; listed in the datastore; a truncated MP4 answered 4xx with the server alive."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from server_utils import copy_app, running_server

from usseg_models.io import load_image, write_video

pytestmark = [pytest.mark.server, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*carries no calibration:UserWarning")]

monailabel_client = pytest.importorskip("monailabel.client")

PARAMS = {"allow_untrained": True}  # an untrained model answers 409 unless asked explicitly


@pytest.fixture(scope="module")
def lung_mp4(shared_data):
    path = shared_data / "us_mp4" / "patient_10_L1.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, lung_mp4):
    tmp = tmp_path_factory.mktemp("app_video")
    studies = tmp / "studies"
    frames = np.full((20, 48, 64, 3), 40, np.uint8)
    for t in range(20):
        frames[t, 10 + t // 2 : 30 + t // 2, 20:40] = 190
    write_video(studies / "clip_a.mp4", frames, fps=30)  # a datastore item that is a (small) video file
    with running_server(copy_app(tmp / "app"), studies, conf={"models": "dsanet", "config": "small"}) as url:
        yield url, tmp


def test_mp4_upload_segmented_with_its_frame_count(server, lung_mp4):
    url, tmp = server
    client = monailabel_client.MONAILabelClient(url, tmpdir=str(tmp / "client"))
    label_file, params = client.infer("dsanet", "", PARAMS, file=str(lung_mp4))
    assert params["num_frames"] == 100 and params["shape"] == [350, 350, 100]
    label, meta = load_image(label_file)
    assert label.shape == (350, 350, 100) and set(np.unique(label)) <= {0, 1}
    np.testing.assert_array_equal(meta["affine"], np.eye(4))  # a video has no calibration: pixel units


def test_mp4_in_datastore_listed_and_segmented_by_id(server):
    url, tmp = server
    listing = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=60).json()
    assert "clip_a" in listing["objects"]
    client = monailabel_client.MONAILabelClient(url, tmpdir=str(tmp / "client_id"))
    label_file, params = client.infer("dsanet", "clip_a", PARAMS)
    assert params["num_frames"] == 20 and load_image(label_file)[0].shape == (64, 48, 20)


def test_truncated_mp4_gets_4xx_and_server_survives(server, lung_mp4, tmp_path):
    url, _ = server
    raw = lung_mp4.read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(raw[: len(raw) // 2])
    with open(bad, "rb") as f:
        r = requests.post(f"{url}/infer/dsanet", params={"output": "all"}, files={"file": ("cut.mp4", f)},
                          data={"params": json.dumps(PARAMS)}, timeout=300)
    assert 400 <= r.status_code < 500, r.text[:300]
    assert "truncated" in r.text
    with open(bad, "rb") as f:
        r = requests.put(f"{url}/datastore/", params={"image": "cut"}, files={"file": ("cut.mp4", f)}, timeout=60)
    assert 400 <= r.status_code < 500, r.text[:300]
    assert requests.get(f"{url}/info/", timeout=30).status_code == 200
