"""USSegClipLib.frame_chunks: chunked clip inference sees exactly the windows a whole-clip run sees.

Checked against the project's own window rule (``usseg_models.transforms.clip.window_indices``, used by DSANet's
predictor and training): for every kept frame, the window it gets inside its chunk, mapped back to clip indices,
must equal its window in the whole clip.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"))

from USSegClipLib import frame_chunks  # noqa: E402

window_indices = pytest.importorskip("usseg_models.transforms.clip").window_indices


@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 5, 7, 9, 16, 31])
@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 4, 8])
def test_chunks_tile_the_clip_and_keep_whole_clip_windows(num_frames, chunk):
    chunks = frame_chunks(num_frames, chunk)
    kept = [t for _, first, stop, _ in chunks for t in range(first, stop)]
    assert kept == list(range(num_frames))
    for first_sent, first_kept, stop, stop_sent in chunks:
        assert 0 <= first_sent <= first_kept < stop <= stop_sent <= num_frames
        sent = stop_sent - first_sent
        for t in range(first_kept, stop):
            in_chunk = [first_sent + i for i in window_indices(sent, t - first_sent)]
            assert in_chunk == window_indices(num_frames, t), (num_frames, chunk, t)


def test_without_context_or_lookahead_windows_differ():
    """The check above can fail: chunks without the extra frames give other windows."""
    chunks = frame_chunks(10, 4, context_frames=0, lookahead_frames=0)
    differs = []
    for first_sent, first_kept, stop, stop_sent in chunks:
        for t in range(first_kept, stop):
            in_chunk = [first_sent + i for i in window_indices(stop_sent - first_sent, t - first_sent)]
            differs.append(in_chunk != window_indices(10, t))
    assert any(differs)


def test_bad_arguments():
    assert frame_chunks(10, 4) == [(0, 0, 4, 6), (2, 4, 8, 10), (6, 8, 10, 10)]
    for args in [(0, 4), (5, 0), (5, 2, -1), (5, 2, 2, -1)]:
        with pytest.raises(ValueError):
            frame_chunks(*args)
