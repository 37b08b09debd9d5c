"""The torch-free Slicer Lib's own copies of the library's conventions agree with the library's one definitions.

``USSegClipLib`` runs inside Slicer's Python without usseg_models, so it keeps small copies of the LPS↔RAS flip,
the BT.601 grey rule and the fallback segment colours; this test holds them equal to ``usseg_models.io.conventions``
and ``usseg_models.palette``, on arrays and on the same files read by both sides.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"))

from USSegClipLib import Clip, read_volume, segfile, to_grey, volumeio  # noqa: E402  # noqa: E402

from usseg_models import palette  # noqa: E402
from usseg_models.io import conventions, load_image, writers  # noqa: E402


def test_lps_to_ras_is_the_same_matrix():
    np.testing.assert_array_equal(volumeio.LPS_TO_RAS, conventions.LPS_TO_RAS)


def test_grey_rule_is_the_same():
    rgb = np.random.default_rng(12).integers(0, 256, size=(2, 6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_grey(rgb), conventions.bt601_luma(rgb))


def test_fallback_segment_colours_are_the_same():
    assert tuple(map(tuple, segfile.DEFAULT_COLORS)) == palette.FALLBACK_COLORS


def test_same_nrrd_file_gives_the_same_geometry_on_both_sides(tmp_path):
    """A label written by the server's writer: the Lib's IJK→RAS equals the library reader's affine."""
    affine = np.array([[0.0, 0.3, 0, 5.0], [-0.25, 0, 0, -7.0], [0, 0, 1.0, 2.0], [0, 0, 0, 1]])
    label = np.zeros((6, 5, 4), np.uint8)
    label[1:3, 2:4, 1] = 1
    path = writers.write_label(tmp_path / "label.nrrd", label, {"affine": affine})
    _, meta = load_image(path)
    clip = read_volume(str(path))
    assert isinstance(clip, Clip)
    np.testing.assert_allclose(clip.ijk_to_ras, meta["affine"], atol=1e-9)
    np.testing.assert_allclose(meta["affine"], affine, atol=1e-9)
