"""``usseg bench loop --quick``: both curves against a real server, with every output written."""

from __future__ import annotations

import csv

import pytest
from test_bench_refine import refuses_missing_checkpoint

from usseg_models.bench.loop import spread_frames

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_spread_frames():
    assert spread_frames(10, 0) == []
    assert spread_frames(11, 1) == [5]
    assert spread_frames(24, 3) == [6, 12, 17]
    assert all(0 < t < 23 for t in spread_frames(24, 5)) and len(spread_frames(24, 5)) == 5


def test_bench_loop_quick_writes_both_curves(tmp_path):
    from usseg_models.cli.main import main

    out = tmp_path / "loop"
    assert main(["bench", "loop", "--quick", "--out", str(out)]) == 0
    refinement = list(csv.DictReader(open(out / "refinement.csv")))
    labelling = list(csv.DictReader(open(out / "labelling.csv")))
    assert sorted({int(r["k"]) for r in refinement}) == [0, 1, 3]
    assert len(refinement) == 2 * 3  # two held-out clips x three k
    for row in refinement:
        assert 0.0 <= float(row["dice_uncorrected"]) <= 1.0
        # the server's default mode (hybrid) adapts only from three corrected frames on (one held out to judge it)
        assert int(row["steps"]) == (3 if int(row["k"]) >= 3 else 0), row
    assert [int(r["labelled_clips"]) for r in labelling] == [0, 1, 2]
    assert [r["trained"] for r in labelling[1:]] == ["True", "True"]
    assert labelling[1]["published"] == "True"  # the first model is published: there was none
    summary = (out / "summary.md").read_text()
    assert "(a) Refinement" in summary and "(b) Labelling" in summary
    assert (out / "loop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_loop_refuses_a_missing_base_checkpoint_before_starting_a_server(tmp_path, capsys):
    refuses_missing_checkpoint("loop", tmp_path, capsys)
    assert not (tmp_path / "o").exists()
