"""``dsanet_refine`` and ``USSegClipLib`` refinement with several structures (issue 20, item 4), without a server:
the infer task's ``run`` on a stub model store (a real 4-channel DSANet), and the Slicer library's request inputs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from fastapi import HTTPException
from structures_clip import three_structure_clip

from monailabel_app.lib.infers.refine import DSANetRefineInfer
from usseg_models.networks import build_network

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"))

from USSegClipLib.errors import ClipGeometryError  # noqa: E402
from USSegClipLib.geometry import Clip  # noqa: E402
from USSegClipLib.refine import _as_drawn, _inputs, _with_structures, task_label_values  # noqa: E402

T = 24
NAMES = {"LV": 1, "MYO": 2, "LA": 3}


class _Store:
    """What the refine task uses of a :class:`monailabel_app.lib.model_store.ModelStore`."""

    def __init__(self, network):
        self.lock, self.spatial_size, self.device, self.network = threading.Lock(), 64, torch.device("cpu"), network

    def refresh(self):
        return self.network, {"version": "stub"}

    def weights_path(self):
        return None


@pytest.fixture(scope="module")
def clip():
    return three_structure_clip(T, 96, seed=1)


@pytest.fixture(scope="module")
def task():
    torch.manual_seed(0)
    net = build_network("dsanet", "small", out_channels=4).eval()
    return DSANetRefineInfer(_Store(net), NAMES, {n: (1.0, 0.0, 0.0) for n in NAMES})


@pytest.fixture
def label_file():
    paths = []

    def write(label: np.ndarray) -> str:
        fd, path = tempfile.mkstemp(suffix=".nii.gz", dir=tempfile.gettempdir())  # where uploads land
        os.close(fd)
        nib.save(nib.Nifti1Image(label.astype(np.uint8), np.eye(4)), path)
        paths.append(path)
        return path

    yield write
    for p in paths:
        os.remove(p)


def _run(task, cine, path, params):
    return task.run(cine, {"label": path, **params}, cine, {})


def test_a_frame_correcting_only_lv_keeps_its_myocardium_through_the_task(task, clip, label_file):
    cine, truth = clip
    sent = truth.copy()
    sent[..., 7] = np.where(truth[..., 7] == 1, 1, 0)               # frame 7: only the LV drawn
    masks, _, extra = _run(task, cine, label_file(sent), {"corrected_frames": [2, 7, 12, 21], "mode": "propagate",
                                                          "corrected_structures": {"7": ["LV"]}})
    np.testing.assert_array_equal(masks[..., 7] == 1, truth[..., 7] == 1)
    myo = masks[..., 7] == 2
    assert 2.0 * np.logical_and(myo, truth[..., 7] == 2).sum() / (myo.sum() + (truth[..., 7] == 2).sum()) >= 0.85
    for t in (2, 12, 21):
        np.testing.assert_array_equal(masks[..., t], truth[..., t])
    assert extra["refinement"]["structures"]["MYO"]["frames"] == [2, 12, 21]


def test_hybrid_with_a_softmax_network_answers_label_values(task, clip, label_file):
    cine, truth = clip
    frames = [1, 6, 11, 16, 22]
    masks, _, extra = _run(task, cine, label_file(truth), {"corrected_frames": frames, "max_steps": 2})
    assert set(np.unique(masks)) <= {0, 1, 2, 3} and extra["refinement"]["steps"] == 2
    for t in frames:
        np.testing.assert_array_equal(masks[..., t], truth[..., t])


@pytest.mark.parametrize(
    "params, fill, message",
    [
        ({"corrected_frames": [3]}, 4, "outside the label set 1:LV,2:MYO,3:LA"),
        ({"corrected_frames": [3], "corrected_structures": {"3": [9]}}, 1, "not a structure of the label set"),
        ({"corrected_frames": [3], "corrected_structures": {"3": ["RV"]}}, 1, "not a structure of the label set"),
        ({"corrected_frames": [3], "corrected_structures": {"5": [1]}}, 1, "not a corrected frame"),
        ({"corrected_frames": [3], "corrected_structures": {"3": []}}, 1, "empty"),
        ({"corrected_frames": [3], "corrected_structures": [[3, 1]]}, 1, "must be an object"),
    ],
)
def test_values_outside_the_label_set_get_422(task, clip, label_file, params, fill, message):
    cine, _ = clip
    label = np.zeros(cine.shape, np.uint8)
    label[40:60, 40:60, :] = fill
    with pytest.raises(HTTPException) as err:
        _run(task, cine, label_file(label), params)
    assert err.value.status_code == 422 and message in err.value.detail


def test_slicer_lib_sends_label_values_and_the_structures_of_each_frame(tmp_path):
    info = {"models": {"dsanet_refine": {"labels": NAMES}, "one": {"labels": {"thyroid": 1}}}}
    assert task_label_values(info, "dsanet_refine") == [1, 2, 3] and task_label_values(info, "one") is None
    voxels = np.zeros((8, 6, 5), np.uint8)
    voxels[2:4, 2:4, :] = 1
    voxels[4:6, 2:4, :] = 2
    label = Clip(voxels, np.eye(4), 2)
    with pytest.raises(ClipGeometryError, match="binary"):
        _inputs(label, [0], None, "x", str(tmp_path))
    with pytest.raises(ClipGeometryError, match=r"\[2\] outside the server's label values \[0, 1\]"):
        _inputs(label, [0], None, "x", str(tmp_path), label_values=[1])
    with pytest.raises(ValueError, match="not a corrected frame"):
        _inputs(label, [0], None, "x", str(tmp_path), [1, 2, 3], {3: [1]})
    with pytest.raises(ValueError, match=r"\[4\] not among"):
        _inputs(label, [0], None, "x", str(tmp_path), [1, 2, 3], {0: [4]})
    inputs = _inputs(label, [0, 3], None, "x", str(tmp_path), [1, 2, 3], {3: [1]})
    assert _with_structures({"mode": "hybrid"}, inputs) == {"mode": "hybrid", "corrected_structures": {"3": [1]}}
    answer = np.zeros_like(voxels)
    answer[1:3, 2:4, :] = 1                                           # the answer's LV, shifted
    answer[4:7, 2:4, :] = 2
    kept = _as_drawn(Clip(answer, np.eye(4), 2), inputs).voxels
    np.testing.assert_array_equal(kept[..., 0], voxels[..., 0])       # a whole-frame correction: as drawn
    np.testing.assert_array_equal(kept[..., 3] == 1, voxels[..., 3] == 1)   # frame 3: its LV as drawn
    np.testing.assert_array_equal(kept[..., 3] == 2, answer[..., 3] == 2)   # and MYO from the answer
    np.testing.assert_array_equal(kept[..., 1], answer[..., 1])
