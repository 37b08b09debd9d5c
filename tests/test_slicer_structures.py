"""USSegClipLib with several structures per clip (issue 20): an infer answer's 3-value label map and ``label_names``
/ ``label_colors`` become three named, coloured segments; segments back to one label map keep every structure; the
fallback colours are the library's; a frame is reviewed as a whole.

Plain Python (no Slicer); the Logic on MRML is ``test_slicer_structures_mrml.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"))

from USSegClipLib import (  # noqa: E402
    FALLBACK_COLORS,
    LabelFileError,
    SegmentStyle,
    changed_frames,
    compose_labelmap,
    fallback_color,
    label_palette,
    label_segments,
    palette_for_label,
    segfile,
)

from usseg_models import palette as library_palette  # noqa: E402
from usseg_models.io import writers  # noqa: E402
from usseg_models.labels import parse_labels  # noqa: E402

NAMES = {"LV": 1, "MYO": 2, "LA": 3}
COLORS = {"LV": [1.0, 0.0, 0.0], "MYO": [0.0, 0.6, 0.2], "LA": [0.1, 0.3, 0.9]}


def _echo_label(shape=(10, 9, 4)) -> np.ndarray:
    """(i, j, t): a cavity (1) inside a wall (2), an atrium (3) below, different on every frame."""
    label = np.zeros(shape, np.uint8)
    for t in range(shape[2]):
        label[1 + t % 2 : 7 + t % 2, 1:6, t] = 2
        label[2 + t % 2 : 6 + t % 2, 2:5, t] = 1
        label[2:8, 6 : 7 + t % 2, t] = 3
    return label


def test_fallback_colours_are_the_librarys():
    assert tuple(map(tuple, FALLBACK_COLORS)) == library_palette.FALLBACK_COLORS
    assert segfile.DEFAULT_COLORS == FALLBACK_COLORS  # the .seg.nrrd writer uses the same copy
    for i in range(2 * len(FALLBACK_COLORS)):
        assert fallback_color(i) == library_palette.fallback_color(i)


def test_three_value_label_map_becomes_three_named_coloured_segments():
    label = _echo_label()
    segments = label_segments(label, label_palette({"label_names": NAMES, "label_colors": COLORS}))
    assert [(s.name, s.value) for s, _ in segments] == [("LV", 1), ("MYO", 2), ("LA", 3)]
    assert [s.color for s, _ in segments] == [tuple(COLORS[n]) for n in ("LV", "MYO", "LA")]
    for style, mask in segments:
        assert mask.dtype == bool and mask.shape == label.shape
        np.testing.assert_array_equal(mask, label == style.value)
        assert mask.any()
    back = compose_labelmap({s.name: m for s, m in segments}, NAMES)
    np.testing.assert_array_equal(back, label)


def test_server_palette_of_a_label_set_gives_the_same_segments():
    """What the app sends for ``--labels 1:LV,2:MYO,3:LA`` (LabelSet names and colours) is what Slicer shows."""
    labels = parse_labels("1:LV,2:MYO,3:LA")
    colors = {k: list(v) for k, v in labels.label_colors().items()}
    answer = {"label_names": labels.label_names(), "label_colors": colors}
    styles = [s for s, _ in label_segments(_echo_label(), label_palette(answer))]
    assert styles == [SegmentStyle(n, v, tuple(labels.label_colors()[n])) for n, v in labels.label_names().items()]
    assert [s.name for s in styles] == ["LV", "MYO", "LA"]


def test_structures_without_colour_or_name_get_fallback_colours():
    label = _echo_label()
    label[0, 0, 0] = 5  # a value the server did not name
    palette = label_palette({"label_names": NAMES, "label_colors": {"MYO": [0.0, 0.6, 0.2]}})
    assert [s.color for s in palette] == [None, (0.0, 0.6, 0.2), None]  # the server's palette as it was sent
    styles = [s for s, _ in label_segments(label, palette)]
    assert styles == [SegmentStyle("LV", 1, FALLBACK_COLORS[0]), SegmentStyle("MYO", 2, (0.0, 0.6, 0.2)),
                      SegmentStyle("LA", 3, FALLBACK_COLORS[2]), SegmentStyle("Segment_5", 5, FALLBACK_COLORS[3])]
    assert palette_for_label(palette) == styles[:3]  # without a label: colours only, no extra segment
    # the same name and colour the library's writer gives an unnamed value
    written = writers.default_segments(label, {v: n for n, v in NAMES.items()})
    assert (written[-1]["name"], written[-1]["color"]) == ("Segment_5", FALLBACK_COLORS[3])
    with pytest.raises(LabelFileError, match="distinct"):
        palette_for_label([SegmentStyle("LV", 1), SegmentStyle("MYO", 1)])


def test_structure_missing_from_the_label_is_an_empty_segment():
    label = _echo_label()
    label[label == 3] = 0
    segments = dict((s.name, m) for s, m in label_segments(label, label_palette({"label_names": NAMES})))
    assert list(segments) == ["LV", "MYO", "LA"] and not segments["LA"].any()


def test_export_keeps_every_structure_after_one_is_edited():
    label = _echo_label()
    masks = {s.name: m for s, m in label_segments(label, label_palette({"label_names": NAMES}))}
    before = {k: v.copy() for k, v in masks.items()}
    masks["LV"][:, :, 2] = False
    masks["LV"][3:5, 3:4, 2] = True  # the user redraws the cavity on frame 2 only
    assert changed_frames(masks, before) == [2]  # a frame is reviewed as a whole
    exported = compose_labelmap(masks, NAMES)
    for name in ("MYO", "LA"):
        np.testing.assert_array_equal(exported == NAMES[name], label == NAMES[name])
    np.testing.assert_array_equal(exported == 1, masks["LV"])
    other = [t for t in range(label.shape[2]) if t != 2]
    np.testing.assert_array_equal(exported[:, :, other], label[:, :, other])


def test_export_refuses_overlaps_and_named_strangers_but_drops_empty_ones():
    label = _echo_label()
    masks = {s.name: m for s, m in label_segments(label, label_palette({"label_names": NAMES}))}
    overlapping = dict(masks, LV=masks["LV"] | (label == 2) & (np.arange(label.shape[2]) == 3))
    with pytest.raises(LabelFileError, match=r"overlaps another segment .* frame\(s\) \[3\]"):
        compose_labelmap(overlapping, NAMES)
    empty = dict(masks, Segment_5=np.zeros(label.shape, bool))
    np.testing.assert_array_equal(compose_labelmap(empty, NAMES), label)
    with pytest.raises(LabelFileError, match="'Segment_5'.*not server labels"):
        compose_labelmap(dict(masks, Segment_5=label == 0), NAMES)
