"""USSegClipLib geometry: frame index ↔ world position through the IJK→RAS matrix, file round trips.

Cross-checked against SimpleITK, an independent implementation of voxel ↔ physical mapping (in LPS).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"))

from USSegClipLib import (  # noqa: E402
    Clip,
    ClipGeometryError,
    compose_matrix,
    frame_index_from_ras,
    ijk_to_kji,
    kji_to_ijk,
    ras_of_frame,
    read_volume,
    split_matrix,
    write_nifti,
    write_nrrd,
)


def _rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


# (name, direction, spacing, origin, frame_axis, shape)
CASES = [
    ("identity", np.eye(3), [1.0, 1.0, 1.0], [0, 0, 0], 2, (6, 5, 7)),
    ("oblique", _rotation([1, 2, 3], 37), [0.21, 0.34, 1.7], [12.5, -40.0, 7.25], 2, (9, 8, 6)),
    ("flipped", np.diag([-1.0, 1.0, -1.0]), [0.5, 0.25, 2.0], [100.0, -3.0, 50.0], 2, (7, 6, 5)),
    ("frames_first", _rotation([0, 1, 1], -120), [3.0, 0.4, 0.4], [1, 2, 3], 0, (8, 6, 5)),
    ("frames_middle", _rotation([1, 0, 0], 90) @ np.diag([1, 1, -1]), [0.3, 0.9, 0.3], [-5, 5, 0], 1, (4, 9, 6)),
]


def _clip(direction, spacing, origin, frame_axis, shape) -> Clip:
    voxels = np.zeros(shape, np.int16)
    idx = [1, 1, 1]
    idx[frame_axis] = -1
    voxels += np.arange(shape[frame_axis], dtype=np.int16).reshape(idx)  # voxel value = its frame index
    return Clip(voxels, compose_matrix(spacing, origin, direction), frame_axis)


@pytest.mark.parametrize("name,direction,spacing,origin,frame_axis,shape", CASES, ids=[c[0] for c in CASES])
def test_frame_index_roundtrip_every_voxel(name, direction, spacing, origin, frame_axis, shape):
    clip = _clip(direction, spacing, origin, frame_axis, shape)
    m = clip.ijk_to_ras
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    ras = np.c_[ijk, np.ones(len(ijk))] @ m.T
    for (i, j, k), p in zip(ijk[::7], ras[::7, :3]):
        expected = clip.voxels[i, j, k]
        assert frame_index_from_ras(m, p, frame_axis, clip.num_frames) == expected
        assert clip.frame_at(p) == expected
    for t in range(clip.num_frames):
        centre = ras_of_frame(m, shape, t, frame_axis)
        assert clip.frame_at(centre) == t
        # half a voxel off the frame plane stays within rounding of the same frame
        normal = m[:3, frame_axis]
        assert clip.frame_at(centre + 0.49 * normal) == t
        assert np.all(clip.frame(t) == t)


def test_slice_offset_is_not_the_frame_index():
    """A rotated, offset clip: reading the frame from the RAS S coordinate (a slice offset) gives wrong frames,
    so the round trip above would catch an implementation that did that."""
    clip = _clip(*CASES[1][1:])
    naive = [int(round(clip.frame_center(t)[2] / clip.spacing[2])) for t in range(clip.num_frames)]
    assert naive != list(range(clip.num_frames))
    assert [clip.frame_at(clip.frame_center(t)) for t in range(clip.num_frames)] == list(range(clip.num_frames))


@pytest.mark.parametrize("name,direction,spacing,origin,frame_axis,shape", CASES, ids=[c[0] for c in CASES])
def test_against_simpleitk(tmp_path, name, direction, spacing, origin, frame_axis, shape):
    sitk = pytest.importorskip("SimpleITK")
    clip = _clip(direction, spacing, origin, frame_axis, shape)
    path = write_nrrd(clip, tmp_path / "clip.nrrd")
    img = sitk.ReadImage(str(path))
    assert img.GetSize() == shape  # ITK size is (i, j, k)
    rng = np.random.default_rng(0)
    for _ in range(20):
        ijk = rng.uniform(-0.4, np.asarray(shape) - 0.6)
        ras = (clip.ijk_to_ras @ np.append(ijk, 1))[:3]
        lps = ras * [-1, -1, 1]
        itk_index = np.asarray(img.TransformPhysicalPointToContinuousIndex(lps.tolist()))
        np.testing.assert_allclose(itk_index, ijk, atol=1e-9)
        assert frame_index_from_ras(clip.ijk_to_ras, ras, frame_axis) == int(np.floor(itk_index[frame_axis] + 0.5))


@pytest.mark.parametrize("name,direction,spacing,origin,frame_axis,shape", CASES, ids=[c[0] for c in CASES])
def test_file_roundtrips_keep_geometry(tmp_path, name, direction, spacing, origin, frame_axis, shape):
    clip = _clip(direction, spacing, origin, frame_axis, shape)
    nrrd_back = read_volume(write_nrrd(clip, tmp_path / "c.nrrd"), frame_axis)
    np.testing.assert_array_equal(nrrd_back.voxels, clip.voxels)
    np.testing.assert_allclose(nrrd_back.ijk_to_ras, clip.ijk_to_ras, rtol=1e-14, atol=1e-12)
    nii_back = read_volume(write_nifti(clip, tmp_path / "c.nii.gz"), frame_axis)
    np.testing.assert_array_equal(nii_back.voxels, clip.voxels)
    np.testing.assert_allclose(nii_back.ijk_to_ras, clip.ijk_to_ras, atol=1e-5)  # NIfTI sform is float32
    s, o, d = split_matrix(nii_back.ijk_to_ras)
    np.testing.assert_allclose(s, spacing, rtol=1e-6)
    np.testing.assert_allclose(o, origin, atol=1e-5)
    np.testing.assert_allclose(d, direction, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_frames_last_and_single_frame_keep_world_positions(case):
    clip = _clip(*case[1:])
    last = clip.with_frames_last()
    assert last.frame_axis == 2 and last.num_frames == clip.num_frames
    for t in range(clip.num_frames):
        np.testing.assert_allclose(last.frame_center(t), clip.frame_center(t), atol=1e-9)
        np.testing.assert_array_equal(last.frame(t), clip.frame(t))
        one = clip.single_frame(t)
        assert one.voxels.shape[2] == 1
        np.testing.assert_allclose(one.frame_center(0), clip.frame_center(t), atol=1e-9)
        assert np.all(one.voxels == t)


def test_kji_ijk_reordering():
    a = np.arange(24).reshape(2, 3, 4)  # (k, j, i) as arrayFromVolume returns
    ijk = kji_to_ijk(a)
    assert ijk.shape == (4, 3, 2) and ijk[3, 2, 1] == a[1, 2, 3]
    np.testing.assert_array_equal(ijk_to_kji(ijk), a)


@pytest.mark.parametrize(
    "matrix,message",
    [
        (np.eye(3), "4×4"),
        (np.diag([1.0, 0.0, 1.0, 1.0]), "singular"),
        (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]), "last row"),
        (np.full((4, 4), np.nan), "non-finite"),
    ],
)
def test_bad_matrices_are_refused(matrix, message):
    with pytest.raises(ClipGeometryError, match=message):
        Clip(np.zeros((2, 2, 2)), matrix)


def test_out_of_range_frames_are_refused():
    clip = _clip(*CASES[1][1:])
    beyond = clip.frame_center(clip.num_frames - 1) + 2 * clip.ijk_to_ras[:3, 2]
    with pytest.raises(ClipGeometryError, match="outside the clip"):
        clip.frame_at(beyond)
    with pytest.raises(ClipGeometryError, match="out of range"):
        clip.frame(clip.num_frames)
    with pytest.raises(ClipGeometryError, match="frame axis"):
        Clip(np.zeros((2, 2, 2)), np.eye(4), frame_axis=3)
    with pytest.raises(ClipGeometryError, match="3-D"):
        Clip(np.zeros((2, 2)), np.eye(4))


def test_stack_frames_of_a_sequence():
    from USSegClipLib import stack_frames

    m = compose_matrix([0.2, 0.25, 3.0], [5, 6, -2], _rotation([1, 1, 0], 50))
    frames = [np.full((4, 3), t, np.uint8) for t in range(5)]
    clip = stack_frames(frames, m)
    assert clip.voxels.shape == (4, 3, 5) and clip.frame_axis == 2
    np.testing.assert_array_equal(clip.ijk_to_ras[:, :2], m[:, :2])  # in-plane geometry untouched
    np.testing.assert_allclose(clip.ijk_to_ras[:3, 3], m[:3, 3])
    step = clip.ijk_to_ras[:3, 2]
    np.testing.assert_allclose(np.linalg.norm(step), 1.0)
    np.testing.assert_allclose(step @ m[:3, 0], 0, atol=1e-12)
    np.testing.assert_allclose(step @ m[:3, 1], 0, atol=1e-12)
    for t in range(5):
        assert clip.frame_at(clip.frame_center(t)) == t and np.all(clip.frame(t) == t)
    with pytest.raises(ClipGeometryError, match="one shape"):
        stack_frames([np.zeros((4, 3)), np.zeros((3, 4))], m)
    with pytest.raises(ClipGeometryError, match="no frames"):
        stack_frames([], m)


def test_to_grey_matches_the_usseg_colour_rule():
    from USSegClipLib import to_grey

    bt601_luma = pytest.importorskip("usseg_models.io.dicom_pixels").bt601_luma
    rgb = np.random.default_rng(4).integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)  # (k, j, i, rgb)
    grey = to_grey(rgb)
    assert grey.shape == (3, 5, 7) and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey, bt601_luma(rgb))
    g = rgb[..., 0]
    assert to_grey(g) is g
    with pytest.raises(ClipGeometryError):
        to_grey(np.zeros((2, 2)))


def test_matrix_text_roundtrip_is_exact():
    from USSegClipLib import matrix_from_text, matrix_to_text

    m = compose_matrix([0.1 / 3, 0.7, 1.0], [1e-9, -123.456789, 7.0], _rotation([3, 1, 2], 17.3))
    assert np.array_equal(matrix_from_text(matrix_to_text(m)), m)
    for bad in ("1 2 3", "a b", " ".join(["0"] * 16)):
        with pytest.raises(ClipGeometryError):
            matrix_from_text(bad)
