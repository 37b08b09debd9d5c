"""Sparse-frame labels end to end: a synthetic clip labelled on every 4th frame trains DSANet without any missing
mask being read, beats the untrained model, and evaluation scores the labelled frames only (and says so)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import usseg_models.io.formats as io_formats
from usseg_models.data.discovery import discover_clips

N_FRAMES, SIZE, EVERY = 20, 64, 4


def _write_clip(folder, split, name, seed):
    """Frame folders ``<split>/frames/<name>/<t>.png`` with masks ``<split>/masks/<name>/<t>.png`` on t % 4 == 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    written = []
    for t in range(N_FRAMES):
        cy, cx = 24 + 10 * np.sin(t / 4 + seed), 30 + 8 * np.cos(t / 5 + seed)
        mask = ((yy - cy) ** 2 / 200 + (xx - cx) ** 2 / 110) <= 1
        img = rng.gamma(8.0, 6.0, (SIZE, SIZE)) + mask * 140
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(_mk(folder / split / "frames" / name) / f"{t}.png")
        if t % EVERY == 0:
            path = _mk(folder / split / "masks" / name) / f"{t}.png"
            Image.fromarray((mask * 255).astype(np.uint8)).save(path)
            written.append(path)
    return written


def _mk(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def sparse_data(tmp_path):
    masks = []
    masks += _write_clip(tmp_path / "data", "train", "a", 1)
    masks += _write_clip(tmp_path / "data", "train", "b", 2)
    masks += _write_clip(tmp_path / "data", "val", "c", 3)
    return tmp_path / "data", {p.resolve() for p in masks}


def test_sparse_training_reads_only_existing_masks_and_improves(sparse_data, tmp_path, monkeypatch):
    from usseg_models.evaluation import evaluate_dsanet
    from usseg_models.training import train_dsanet

    data, mask_files = sparse_data
    clips = discover_clips(data)
    assert [c.labelled for c in clips] == [tuple(range(0, N_FRAMES, EVERY))] * 3
    read = []
    original = io_formats.load_image

    def recording(path, *args, **kwargs):
        read.append(Path(path).resolve())
        return original(path, *args, **kwargs)

    monkeypatch.setattr(io_formats, "load_image", recording)
    result = train_dsanet(data, tmp_path / "run", config="small", epochs=12, batch_size=2, device="cpu", lr=1e-3,
                          warmup_epochs=0.5, progress=False, seed=0)
    masks_read = {p for p in read if p.parent.parent.name == "masks"}
    assert masks_read == mask_files  # every real mask read, none of the missing ones asked for
    assert all(p.is_file() for p in read)
    assert result["data"]["split"] == "split folders" and result["data"]["n_val"] == 1
    before, after = result["initial_val_dice"], result["best_dice"]
    assert after > before + 0.2 and after > 0.45, (before, after)  # ~0.20 -> ~0.58 on CPU

    report = evaluate_dsanet(result["best_checkpoint"], data, tmp_path / "eval", speckle=(), split="val",
                             device="cpu", overlay_clips=1)
    assert report["n_frames"] == N_FRAMES // EVERY and report["n_frames_total"] == N_FRAMES
    assert report["n_sparse_clips"] == 1 and report["temporal"] == {}  # no consecutive labelled frames
    assert report["rows"]["no added noise"]["dice"] == pytest.approx(after, abs=0.1)
    text = report["report"].read_text()
    assert f"{N_FRAMES // EVERY} labelled frames scored of {N_FRAMES} segmented" in text
    assert all(int(p.stem.split("frame")[-1]) % EVERY == 0 for p in report["overlays"])  # labelled frames shown
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_frames"] == N_FRAMES // EVERY
