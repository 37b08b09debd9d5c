"""The one network-input pipeline called as users call it (``ModelPipeline(kind, S).inputs / .labels / .transform``):
shapes, values, label handling, logits back to the original size, and its MONAI ``Compose`` (identical to the
array calls at evaluation time; one flip draw for a whole clip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usseg_models.errors import UssegError
from usseg_models.transforms.clip import window_indices
from usseg_models.transforms.errors import PreprocessingError
from usseg_models.transforms.fan import detect_fan
from usseg_models.transforms.intensity import rgb_to_grey
from usseg_models.transforms.pipeline import Augmentation, ModelPipeline, postprocess_logits
from usseg_models.transforms.resize import resize_xy
from usseg_models.transforms.steps import IMAGENET_MEAN, IMAGENET_STD

S = 32


def preprocess_cine(frames, size):
    return ModelPipeline("cine", size).inputs(frames)


def preprocess_image(image, size):
    return ModelPipeline("image", size).inputs(image)


def preprocess_cine_label(mask, size):
    return ModelPipeline("cine", size).labels(mask)


def preprocess_image_label(mask, size):
    return ModelPipeline("image", size).labels(mask)


def cine_compose(augmentation=None, random_window=False):
    """The cine pipeline as one MONAI ``Compose``, windowing on ``frame_index`` when a sample has one."""
    return ModelPipeline("cine", S).transform(augmentation, window=3, random_window=random_window)


def image_compose(augmentation=None):
    return ModelPipeline("image", S).transform(augmentation)


def _unnormalise(x, channel_dim):
    shape = [1] * x.ndim
    shape[channel_dim] = 3
    return x * torch.tensor(IMAGENET_STD).reshape(shape) + torch.tensor(IMAGENET_MEAN).reshape(shape)


def _asym_cine(x=64, y=48, t=5):
    """(X, Y, T) uint8: frame k has a bright block in one corner plus the value 10 k elsewhere."""
    cine = np.zeros((x, y, t), np.uint8)
    for k in range(t):
        cine[..., k] = 10 * k
    cine[: x // 4, : y // 4] = 250
    return cine


def test_preprocess_cine_shapes_and_values():
    cine = _asym_cine()
    out = preprocess_cine(cine, S)
    assert out.shape == (5, 3, S, S) and out.dtype == torch.float32
    unit = _unnormalise(out, channel_dim=1)
    assert torch.allclose(unit[:, 0], unit[:, 1], atol=1e-5) and torch.allclose(unit[:, 0], unit[:, 2], atol=1e-5)
    assert abs(float(unit[0, 0, 0, 0]) - 250 / 255) < 1e-4  # corner block, frame 0
    assert abs(float(unit[3, 0, -1, -1]) - 30 / 255) < 1e-4  # background of frame 3
    colour = np.repeat(cine[..., None], 3, axis=-1)
    colour[..., 0] = 0  # red channel off: grey = 0.587 G + 0.114 B
    grey = preprocess_cine(colour, S)
    assert grey.shape == (5, 3, S, S)
    np.testing.assert_allclose(_unnormalise(grey, 1)[0, 0, 0, 0], 0.701 * 250 / 255, atol=1e-4)


def test_preprocess_cine_uint16_scaled_by_its_range():
    cine = np.full((20, 20, 2), 65535, np.uint16)
    cine[:10] = 0
    unit = _unnormalise(preprocess_cine(cine, 20), 1)
    assert float(unit.max()) == pytest.approx(1.0, abs=1e-5) and float(unit.min()) == pytest.approx(0.0, abs=1e-5)
    dim = (cine // 4).astype(np.uint16)
    assert float(_unnormalise(preprocess_cine(dim, 20), 1).max()) == pytest.approx(0.25, abs=1e-3)


def test_preprocess_image_forms():
    img = _asym_cine()[..., 0]
    ref = preprocess_image(img, S)
    assert ref.shape == (3, S, S) and ref.dtype == torch.float32
    assert torch.equal(preprocess_image(img[..., None], S), ref)  # Slicer's (X, Y, 1)
    assert torch.allclose(preprocess_image(np.repeat(img[..., None], 3, -1), S), ref, atol=1e-5)
    # per channel: ImageNet statistics of a 0 pixel
    zero = preprocess_image(np.zeros((10, 10), np.uint8), 8)
    for c in range(3):
        assert float(zero[c, 0, 0]) == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], abs=1e-6)


@pytest.mark.parametrize(
    "fn, arg",
    [
        (preprocess_cine, np.zeros((10, 10))),
        (preprocess_cine, np.zeros((10, 10, 3, 2))),
        (preprocess_image, np.zeros((10, 10, 5))),
        (preprocess_image, np.zeros((10,))),
        (preprocess_cine_label, np.zeros((10, 10))),
        (preprocess_image_label, np.zeros((10, 10, 4))),
    ],
)
def test_bad_shapes_raise_preprocessing_error(fn, arg):
    with pytest.raises(PreprocessingError, match="shape"):
        fn(arg, S)
    assert issubclass(PreprocessingError, UssegError) and issubclass(PreprocessingError, ValueError)


def test_labels():
    lab = np.zeros((60, 44, 3), np.uint8)
    lab[10:40, 5:30, 1] = 255  # any non-zero value is foreground
    out = preprocess_cine_label(lab, S)
    assert out.shape == (3, 1, S, S) and out.dtype == torch.float32
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert out[0].sum() == 0 and out[1].sum() > 0
    img_lab = preprocess_image_label(lab[..., 1:2], S)
    assert img_lab.shape == (1, S, S) and torch.equal(img_lab[0], out[1, 0])


def test_postprocess_logits_round_trip():
    xy = (150, 97)
    xx, yy = np.mgrid[: xy[0], : xy[1]]
    truth = (((xx - 70) / 45) ** 2 + ((yy - 40) / 25) ** 2 <= 1).astype(np.uint8)
    labels = preprocess_cine_label(np.stack([truth, 1 - truth], -1), 64)  # (2, 1, 64, 64)
    logits = 8 * labels - 4  # confident network
    out = postprocess_logits(logits, xy)
    assert out.shape == (*xy, 2) and out.dtype == np.uint8
    for k, ref in enumerate((truth, 1 - truth)):
        inter = np.logical_and(out[..., k], ref).sum()
        assert inter / np.logical_or(out[..., k], ref).sum() > 0.95
    single = postprocess_logits(logits[0], xy)
    assert single.shape == xy and np.array_equal(single, out[..., 0])
    assert postprocess_logits(logits[0, 0].numpy(), xy).shape == xy
    with pytest.raises(PreprocessingError):
        postprocess_logits(torch.zeros(2, 2, 8, 8), xy)
    with pytest.raises(PreprocessingError):
        postprocess_logits(logits, (0, 5))


def test_cine_compose_eval_equals_functions_and_windows():
    cine = _asym_cine()
    label = (cine > 200).astype(np.uint8)
    d = cine_compose()({"image": cine, "label": label})
    assert torch.allclose(torch.as_tensor(d["image"]), preprocess_cine(cine, S), atol=1e-6)
    assert torch.equal(torch.as_tensor(d["label"]), preprocess_cine_label(label, S))
    assert d["image_original_xy"] == (64, 48)
    w = cine_compose()({"image": cine, "label": label, "frame_index": 1})
    assert w["image"].shape == (3, 3, S, S) and w["label"].shape == (3, 1, S, S)
    full = preprocess_cine(cine, S)
    assert torch.allclose(torch.as_tensor(w["image"]), full[window_indices(5, 1)], atol=1e-6)


def test_cine_compose_train_flips_all_frames_and_label_together():
    cine = np.repeat(_asym_cine()[..., :1], 4, axis=-1)  # identical frames, asymmetric content
    label = (cine > 200).astype(np.uint8)
    seen = set()
    for seed in range(12):
        tr = cine_compose(Augmentation.training("cine"))
        tr.set_random_state(seed)
        d = tr({"image": cine, "label": label})
        img, lab = torch.as_tensor(d["image"]), torch.as_tensor(d["label"])
        assert img.shape == (4, 3, S, S) and lab.shape == (4, 1, S, S)
        for k in range(1, 4):  # the same flip for every frame
            assert torch.equal(img[k], img[0]) and torch.equal(lab[k], lab[0])
        bright = _unnormalise(img, 1)[0, 0] > 0.9
        assert torch.equal(bright, lab[0, 0] > 0)  # label flipped exactly like the image
        seen.add((bool(lab[0, 0, 0, 0]), bool(lab[0, 0, -1, 0]), bool(lab[0, 0, 0, -1]), bool(lab[0, 0, -1, -1])))
    assert len(seen) == 4  # all four flip combinations occurred


def test_cine_compose_speckle_and_determinism():
    cine = np.full((40, 40, 3), 128, np.uint8)
    outs = []
    for seed in (3, 3):
        tr = cine_compose(Augmentation.speckle_only(20))
        tr.set_random_state(seed)
        outs.append(torch.as_tensor(tr({"image": cine})["image"]))
    assert torch.equal(outs[0], outs[1])
    unit = _unnormalise(outs[0], 1)
    assert torch.allclose(unit[:, 0], unit[:, 2], atol=1e-5)  # grey noise: channels share the field
    assert not torch.allclose(unit[0, 0], unit[1, 0])  # frames get their own field
    assert abs(float(unit.mean()) - 128 / 255) < 0.02 and float(unit.std()) > 0.05


def test_image_compose():
    img = _asym_cine()[..., 0]
    label = (img > 200).astype(np.uint8)
    d = image_compose()({"image": img, "label": label})
    assert torch.allclose(torch.as_tensor(d["image"]), preprocess_image(img, S), atol=1e-6)
    assert torch.equal(torch.as_tensor(d["label"]), preprocess_image_label(label, S))
    corners = set()
    for seed in range(16):
        tr = image_compose(Augmentation(flips=True, rot90=True, rotate_degrees=10))
        tr.set_random_state(seed)
        out = tr({"image": img, "label": label})
        im, lab = torch.as_tensor(out["image"]), torch.as_tensor(out["label"])
        assert im.shape == (3, S, S) and lab.shape == (1, S, S)
        assert set(lab.unique().tolist()) <= {0.0, 1.0}
        bright = _unnormalise(im, 0)[0] > 0.5
        agree = (bright == (lab[0] > 0)).float().mean()
        assert float(agree) > 0.97  # image and label transformed together
        corners.add(int(torch.argmax(lab[0].flatten()[[0, S - 1, S * (S - 1), S * S - 1]])))
    assert len(corners) >= 3


def test_pipelines_return_plain_tensors_that_collate():
    from torch.utils.data import default_collate

    cine = _asym_cine()
    label = (cine > 200).astype(np.uint8)
    samples = []
    for seed in range(3):
        tr = cine_compose(Augmentation.training("cine", speckle_L=25))
        tr.set_random_state(seed)
        samples.append(tr({"image": cine, "label": label, "frame_index": seed}))
    for d in samples:
        assert type(d["image"]) is torch.Tensor and type(d["label"]) is torch.Tensor
        assert d["image"].dtype == torch.float32 and d["label"].dtype == torch.float32
    batch = default_collate(samples)
    assert batch["image"].shape == (3, 3, 3, S, S) and batch["label"].shape == (3, 3, 1, S, S)


@pytest.mark.parametrize(
    "call",
    [
        lambda: window_indices(5, 7),
        lambda: window_indices(0, 0),
        lambda: detect_fan(np.zeros((4, 4, 4, 4))),
        lambda: resize_xy(np.zeros(3), 8),
        lambda: rgb_to_grey(np.zeros((4, 4, 2))),
    ],
)
def test_bad_input_everywhere_is_a_usseg_error(call):
    with pytest.raises(UssegError):
        call()


def test_colour_cine_paths_agree():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 65535, (24, 20, 37, 3), dtype=np.uint16)  # 37 frames: several conversion chunks
    chunked = preprocess_cine(colour, 16)
    reference = preprocess_cine(colour.astype(np.float64) / 65535.0, 16)  # float path: scale first, then luma
    assert chunked.shape == (37, 3, 16, 16)
    assert torch.allclose(chunked, reference, atol=1e-4)


def test_pipelines_refuse_mismatched_labels():
    cine = _asym_cine()
    with pytest.raises(PreprocessingError, match="differ"):
        cine_compose()({"image": cine, "label": np.zeros((64, 48, 4), np.uint8)})
    with pytest.raises(PreprocessingError, match="differ"):
        image_compose()({"image": cine[..., 0], "label": np.zeros((60, 48), np.uint8)})


def test_cine_compose_random_window():
    cine = _asym_cine(t=9)
    full = preprocess_cine(cine, S)
    targets = []
    for seed in (0, 0, 1, 2, 3):
        tr = cine_compose(random_window=True)
        tr.set_random_state(seed)
        d = tr({"image": cine})
        t = d["frame_index"]
        assert d["image"].shape == (3, 3, S, S)
        assert torch.allclose(d["image"], full[window_indices(9, t)], atol=1e-6)
        targets.append(t)
    assert targets[0] == targets[1] and len(set(targets)) > 1
