"""The image model's infer task end to end in-process (read, check, predict, restore, write): label layouts.

A one-slice ``(X, Y, 1)`` NIfTI/NRRD (what 3D Slicer uploads for a 2D image) is squeezed by the reader and given
its slice axis back by the writer; a one-frame cine (DICOM ``NumberOfFrames`` 1, a one-frame video) keeps its
T axis through the task; a cine of several frames is refused with HTTP 422. The HTTP round trip of the one-slice
NIfTI is in ``test_app_server.py``; these run the same ``__call__`` without a server.
"""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
from fastapi import HTTPException

from monailabel_app.lib.infers.intrasense import IntraSenseInfer
from monailabel_app.lib.model_store import ModelStore
from usseg_models.data.dicom_writer import synthetic_identity, write_us_cine
from usseg_models.io import load_image, write_video

OBLIQUE = np.array([[0.0, -0.25, 0.0, 12.5], [0.3, 0.0, 0.0, -7.0], [0.0, 0.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    store = ModelStore("intrasense", "small", tmp_path_factory.mktemp("model"), "cpu")
    return IntraSenseInfer(store, {"lesion": 1}, {"lesion": (1.0, 0.2, 0.2)})


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_one_slice_nifti_label_comes_back_x_y_1_with_the_affine(task, tmp_path):
    src = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(_pixels((40, 32, 1)), OBLIQUE), str(src))
    array, meta = load_image(src)
    assert array.shape == (40, 32) and meta["one_slice"]  # the reader squeezes and flags
    out, params = task({"image": str(src)})
    label = nib.load(out)
    assert label.shape == (40, 32, 1)
    assert params["shape"] == [40, 32, 1]  # the answer describes the file it returns (was [40, 32])
    np.testing.assert_allclose(label.affine, OBLIQUE, atol=1e-6)
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1}


def test_one_slice_nrrd_label_comes_back_x_y_1(task, tmp_path):
    src = tmp_path / "slice.nrrd"
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ OBLIQUE
    header = {"space": "left-posterior-superior", "space directions": lps[:3, :3].T, "space origin": lps[:3, 3]}
    nrrd.write(str(src), _pixels((24, 20, 1), seed=1), header, index_order="F")
    for ext in (".seg.nrrd", ".nii.gz"):
        out, _ = task({"image": str(src), "result_extension": ext})
        label, lmeta = load_image(out)
        assert label.shape == (24, 20) and lmeta["one_slice"], ext  # written (X, Y, 1), read back squeezed
        np.testing.assert_allclose(lmeta["affine"], OBLIQUE, atol=1e-6)


def test_one_frame_cine_keeps_its_frame_axis(task, tmp_path):
    dcm = write_us_cine(tmp_path / "one.dcm", _pixels((1, 30, 36), seed=2), 0.2, 40.0,
                        synthetic_identity(3, "one_frame"))
    clip = write_video(tmp_path / "one.avi", _pixels((1, 24, 28), seed=3))
    for src, xy in ((dcm, (36, 30)), (clip, (28, 24))):
        array, meta = load_image(src)
        assert array.shape[:3] == xy + (1,) and meta["num_frames"] == 1 and not meta["one_slice"]
        out, params = task({"image": str(src)})
        assert nib.load(out).shape == xy + (1,) and params["shape"] == list(xy) + [1] and params["num_frames"] == 1
        np.testing.assert_allclose(nib.load(out).affine, meta["affine"], atol=1e-6)


def test_cine_is_refused_with_422(task, tmp_path):
    src = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(_pixels((16, 12, 3)), OBLIQUE), str(src))
    with pytest.raises(HTTPException) as err:
        task({"image": str(src)})
    assert err.value.status_code == 422
    detail = err.value.detail
    assert "2D" in detail and "got a cine of 3 frame(s) of 16 x 12 px" in detail and "dsanet" in detail
