"""DSANetPredictor: clip-level and streaming masks agree, one backbone pass per frame, start-of-clip delay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usseg_models.inference.video import DSANetPredictor
from usseg_models.networks import build_network
from usseg_models.transforms.pipeline import ModelPipeline
from usseg_models.transforms.resize import resize_xy

S = 64
MARGIN = 1e-4  # logits this close to 0 may flip between batch sizes (float summation order); none expected


@pytest.fixture(scope="module")
def net():
    """Small DSANet with non-trivial BatchNorm statistics and a head bias that splits pixels into both classes."""
    torch.manual_seed(0)
    model = build_network("dsanet", "small").train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 3, 3, S, S) * 4 - 2, return_aux=False)
        model.eval()
        logits = model(torch.rand(2, 3, 3, S, S) * 4 - 2)
        model.head[-1].bias -= logits.median()
    return model


@pytest.fixture(scope="module")
def cine():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (80, 72, 7), dtype=np.uint8)


def count_backbone(model):
    sizes = []
    handle = model.backbone.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    return sizes, handle


def stream_all(predictor, frames):
    state = predictor.init_state()
    emitted_after = {}
    out = {}
    for frame in frames:
        idx = predictor.add_frame(state, frame)
        for t, mask in predictor.propagate(state):
            emitted_after[t] = idx
            out[t] = mask
    for t, mask in predictor.propagate(state, flush=True):
        emitted_after[t] = None
        out[t] = mask
    return state, out, emitted_after


def test_clip_masks_shape_and_both_classes(net, cine):
    masks = DSANetPredictor(net, S, batch_size=3).predict_clip(cine)
    assert masks.shape == (80, 72, 7) and masks.dtype == np.uint8
    assert 0.05 < masks.mean() < 0.95  # the fixture's model predicts both classes, so agreement is meaningful


def test_streaming_equals_clip_level_and_backbone_once_per_frame(net, cine):
    predictor = DSANetPredictor(net, S, batch_size=3)
    sizes, handle = count_backbone(net)
    try:
        clip_masks = predictor.predict_clip(cine)
        assert sum(sizes) == cine.shape[2]  # clip level: every frame encoded exactly once (in batches)
        sizes.clear()
        state, out, emitted_after = stream_all(predictor, [cine[:, :, t] for t in range(cine.shape[2])])
        assert sizes == [1] * cine.shape[2]  # streaming: one backbone call per frame, never repeated
    finally:
        handle.remove()
    assert state.frames_encoded == cine.shape[2]
    assert sorted(out) == list(range(cine.shape[2]))
    stream_masks = np.stack([out[t] for t in range(cine.shape[2])], axis=-1)
    logits = predictor.predict_logits(ModelPipeline("cine", S).inputs(cine))
    resized = resize_xy(logits[:, 0], (80, 72)).permute(1, 2, 0).numpy()
    differ = stream_masks != clip_masks
    assert differ.sum() <= (np.abs(resized) < MARGIN).sum()
    assert not differ[np.abs(resized) >= MARGIN].any()
    # start of clip: t=0 needs frame 2, t=1 needs frame 3 ([1, 0, 3]); t=2 waits for t=1 (frame order)
    assert emitted_after == {0: 2, 1: 3, 2: 3, 3: 3, 4: 4, 5: 5, 6: 6}


@pytest.mark.parametrize("num_frames", [1, 2, 3, 4])
def test_short_clips_flush(net, num_frames):
    clip = torch.rand(num_frames, 3, S, S) * 4 - 2
    predictor = DSANetPredictor(net, S)
    clip_masks = predictor.predict_clip(clip)
    assert clip_masks.shape == (S, S, num_frames)
    logits = predictor.predict_logits(clip)[:, 0].permute(1, 2, 0).numpy()
    _, out, emitted_after = stream_all(predictor, list(clip))
    stream_masks = np.stack([out[t] for t in range(num_frames)], axis=-1)
    assert not (stream_masks != clip_masks)[np.abs(logits) >= MARGIN].any()
    expected_flushed = {1: {0}, 2: {0, 1}, 3: {1, 2}, 4: set()}[num_frames]  # t=2 follows t=1
    assert {t for t, after in emitted_after.items() if after is None} == expected_flushed


def test_predict_logits_matches_network_forward(net):
    clip = torch.rand(5, 3, S, S) * 4 - 2
    logits = DSANetPredictor(net, S, batch_size=2).predict_logits(clip)
    windows = [[0, 1, 2], [1, 0, 3], [2, 1, 0], [3, 2, 1], [4, 3, 2]]
    with torch.no_grad():
        expected = net(torch.stack([clip[w] for w in windows]))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


def test_colour_frames_and_amp_path(net):
    rng = np.random.default_rng(2)
    colour = rng.integers(0, 256, (70, 64, 4, 3), dtype=np.uint8)
    predictor = DSANetPredictor(net, S, amp=True)
    masks = predictor.predict_clip(colour)
    assert masks.shape == (70, 64, 4)
    streamed = dict(predictor.stream(colour[:, :, t] for t in range(4)))
    assert sorted(streamed) == [0, 1, 2, 3] and streamed[0].shape == (70, 64)


def test_bad_input(net):
    predictor = DSANetPredictor(net, S)
    with pytest.raises(ValueError, match="multiple of 32"):
        DSANetPredictor(net, 50)
    with pytest.raises(ValueError, match="DSANet-like"):
        DSANetPredictor(torch.nn.Conv2d(3, 1, 1), S)
    bad = torch.rand(3, 3, S, S)
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict_clip(bad)
    with pytest.raises(ValueError, match=r"\(T, 3, 64, 64\)"):
        predictor.predict_logits(torch.rand(3, 3, 32, 32))
    state = predictor.init_state()
    predictor.add_frame(state, np.zeros((40, 30), np.uint8))
    with pytest.raises(ValueError, match="earlier frames"):
        predictor.add_frame(state, np.zeros((40, 31), np.uint8))
    with pytest.raises(ValueError, match="frame must be"):
        predictor.add_frame(state, np.zeros((40, 30, 2, 2), np.uint8))
    list(predictor.propagate(state, flush=True))
    with pytest.raises(ValueError, match="flushed"):
        predictor.add_frame(state, np.zeros((40, 30), np.uint8))
