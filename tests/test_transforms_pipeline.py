"""The one network-input pipeline: inference and training feed the network identical tensors for the same frames;
augmentation is seeded and moves every frame and mask of a sample alike; speckle touches images only."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from usseg_models.data.datasets import ClipWindowDataset, ImageSegDataset
from usseg_models.data.discovery import discover_clips, discover_images
from usseg_models.inference.image import ImagePredictor
from usseg_models.inference.video import DSANetPredictor
from usseg_models.networks import build_network
from usseg_models.transforms.clip import window_indices
from usseg_models.transforms.pipeline import Augmentation, ModelPipeline
from usseg_models.transforms.steps import IMAGENET_MEAN, IMAGENET_STD

S = 64


def _unit(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Undo the ImageNet normalisation of channel 0 -> the grey [0, 1] frame(s)."""
    return x.select(channel_dim, 0) * IMAGENET_STD[0] + IMAGENET_MEAN[0]


def _spy_dsanet_inputs(predictor: DSANetPredictor) -> list[torch.Tensor]:
    """Record every frame batch the predictor hands to the backbone (each frame is encoded once, in order)."""
    seen: list[torch.Tensor] = []
    encode = predictor.model.encode_frame

    def spy(frames):
        seen.append(frames.detach().cpu().clone())
        return encode(frames)

    predictor.model.encode_frame = spy
    return seen


def test_dsanet_infer_and_train_give_identical_tensors_on_a_real_clip(shared_data):
    folder = shared_data / "vtus_clip0002"
    if not folder.is_dir():
        pytest.skip("vtus_clip0002 not present")
    (record,) = discover_clips(folder)
    dataset = ClipWindowDataset([record], spatial_size=S, augment=False)
    from usseg_models.data.datasets import load_clip_arrays

    cine, label = load_clip_arrays(record)
    predictor = DSANetPredictor(build_network("dsanet", "small"), S, batch_size=16)
    seen = _spy_dsanet_inputs(predictor)
    predictor.predict_clip(cine)
    network_frames = torch.cat(seen)                       # what inference fed the network, frame by frame
    assert network_frames.shape == (cine.shape[2], 3, S, S)
    for i in (0, 1, 45, len(dataset) - 1):
        item = dataset[i]
        idx = window_indices(cine.shape[2], item["frame"])
        assert torch.equal(item["image"], network_frames[idx]), f"window of frame {item['frame']} differs"
        assert torch.equal(item["label"], ModelPipeline("cine", S).labels(label)[idx])
    # and the pipeline is not the identity on these frames: they were resized and normalised
    assert network_frames.shape[-2:] != cine.shape[:2] and float(network_frames.min()) < 0


def test_image_infer_and_train_give_identical_tensors_on_real_images(shared_data, tmp_path):
    hc18 = shared_data / "hc18"
    if not hc18.is_dir():
        pytest.skip("hc18 not present")
    for name in ("000_HC.png", "004_HC.png"):
        for sub in ("images", "masks"):
            (tmp_path / sub).mkdir(exist_ok=True)
            shutil.copy(hc18 / sub / name, tmp_path / sub / name)
    records = discover_images(tmp_path)
    dataset = ImageSegDataset(records, spatial_size=S, augment=False)
    net = build_network("intrasense", "small")
    seen: list[torch.Tensor] = []
    net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().cpu().clone()))
    predictor = ImagePredictor(net, S)
    from usseg_models.io import load_image

    images = [np.asarray(load_image(r.image)[0]) for r in records]
    predictor.predict_many(images)
    (batch,) = seen
    for k in range(len(records)):
        assert torch.equal(dataset[k]["image"], batch[k])


def _bar_clip(frames: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric bright bar, the same in every frame, and its mask: any flip/rotation is visible."""
    cine = np.zeros((40, 40, frames), np.uint8)
    cine[5:12, 8:30] = 200
    cine[5:30, 25:30] = 120
    return cine, (cine > 0).astype(np.uint8)


@pytest.mark.parametrize("kind", ["cine", "image"])
def test_augmentation_moves_every_frame_and_mask_alike_and_is_seeded(kind):
    cine, label = _bar_clip()
    image, mask = (cine, label) if kind == "cine" else (cine[..., 0], label[..., 0])
    aug = Augmentation(flips=True, rot90=True)
    pipe = ModelPipeline(kind, 40, augmentation=aug, seed=3)
    base = pipe.base(image, mask)
    outputs = [pipe.train_sample(base["image"], base["label"]) for _ in range(12)]
    ch = 1 if kind == "cine" else 0
    for x, y in outputs:
        grey = _unit(x, ch)                                  # (T, S, S) or (S, S)
        frames = grey if kind == "cine" else grey[None]
        masks = y[:, 0] if kind == "cine" else y
        for t in range(frames.shape[0]):
            assert torch.allclose(frames[t], frames[0], atol=1e-6)     # one draw for every frame
            assert torch.equal((frames[t] > 0.1).float(), masks[t])    # the mask moved with its frame
    distinct = {tuple(_unit(x, ch).flatten()[::97].tolist()) for x, _ in outputs}
    assert len(distinct) > 2                                            # the draws do differ between samples
    again = ModelPipeline(kind, 40, augmentation=aug, seed=3)
    assert all(torch.equal(again.train_sample(base["image"], base["label"])[0], x) for x, _ in outputs)
    other = ModelPipeline(kind, 40, augmentation=aug, seed=4)
    assert not all(torch.equal(other.train_sample(base["image"], base["label"])[0], x) for x, _ in outputs)


def test_small_angle_rotation_keeps_frames_and_masks_together():
    cine, label = _bar_clip()
    pipe = ModelPipeline("cine", 40, augmentation=Augmentation(flips=False, rotate_degrees=20), seed=0)
    base = pipe.base(cine, label)
    rotated = 0
    for _ in range(8):
        x, y = pipe.train_sample(base["image"], base["label"])
        grey = _unit(x, 1)
        assert all(torch.allclose(grey[t], grey[0], atol=1e-5) for t in range(grey.shape[0]))
        assert all(torch.equal(y[t], y[0]) for t in range(y.shape[0]))
        assert set(torch.unique(y).tolist()) <= {0.0, 1.0}               # nearest for labels
        rotated += not torch.equal(y, base["label"])
        # the rotated mask still covers the rotated bar (bilinear image vs nearest mask: edges may differ)
        agree = ((grey[0] > 0.3).float() == y[0, 0]).float().mean()
        assert agree > 0.97
    assert rotated > 0


def test_speckle_option_noises_images_per_frame_never_labels():
    cine = np.full((32, 32, 3), 128, np.uint8)
    label = np.zeros((32, 32, 3), np.uint8)
    label[8:20, 8:20] = 1
    pipe = ModelPipeline("cine", 32, augmentation=Augmentation(flips=False, speckle_L=4, speckle_prob=1.0), seed=1)
    base = pipe.base(cine, label)
    x, y = pipe.train_sample(base["image"], base["label"])
    grey = _unit(x, 1)
    assert torch.equal(y, base["label"])
    assert float(grey.std()) > 0.05                                     # noise was applied
    assert not torch.allclose(grey[0], grey[1])                         # a fresh field per frame
    clean = ModelPipeline("cine", 32).inputs(cine)
    assert float(_unit(clean, 1).std()) < 1e-6


def test_training_dataset_uses_the_pipeline_augmentation(tmp_path):
    from usseg_models.data.sample_set import generate_sample_set

    generate_sample_set(tmp_path, cines=1, images=0, dicom_images=0, frames=6, size=48, unlabeled=0)
    records = discover_clips(tmp_path)
    plain = ClipWindowDataset(records, S, augment=False)
    noisy = ClipWindowDataset(records, S, augment=Augmentation(flips=False, speckle_L=2, speckle_prob=1.0), seed=0)
    assert torch.equal(plain[0]["label"], noisy[0]["label"])
    assert not torch.allclose(plain[0]["image"], noisy[0]["image"])
    noisy.set_random_state(0)
    first = noisy[0]["image"]
    noisy.set_random_state(0)
    assert torch.equal(noisy[0]["image"], first)


def test_inverse_returns_the_original_geometry():
    pipe = ModelPipeline("cine", S)
    cine, label = _bar_clip(3)
    logits = pipe.labels(label) * 8 - 4                                 # perfect logits at network size
    back = pipe.inverse(logits, cine.shape[:2])
    assert back.shape == label.shape
    assert (back == label).mean() > 0.97


def test_augmentation_settings_are_checked():
    with pytest.raises(ValueError, match="rotate_degrees"):
        Augmentation(rotate_degrees=-1)
    with pytest.raises(ValueError, match="speckle_L"):
        Augmentation(speckle_L=0)
    with pytest.raises(ValueError, match="kind"):
        ModelPipeline("volume", S)
    assert Augmentation.training("image").rot90 and not Augmentation.training("cine").rot90


def test_probabilities_come_back_in_the_mask_layout():
    from usseg_models.transforms.pipeline import postprocess_probabilities

    ramp = torch.linspace(-6, 6, 16)[:, None].expand(16, 16)         # smooth logits: a boundary, not noise
    logits = torch.stack([ramp + shift for shift in (-2.0, 0.0, 1.0, 3.0)])[:, None]
    prob = postprocess_probabilities(logits, (16, 16))                # same size: only the sigmoid and the layout
    assert prob.shape == (16, 16, 4) and prob.dtype == np.float32
    assert np.allclose(prob[..., 2], torch.sigmoid(logits[2, 0]).numpy(), atol=1e-6)
    big = postprocess_probabilities(logits, (40, 24))
    masks = ModelPipeline.inverse(logits, (40, 24))
    assert big.shape == masks.shape == (40, 24, 4)
    assert ((big > 0.5) == (masks > 0)).mean() > 0.97               # the mask is the thresholded probability
    assert 0 < masks.mean() < 1
    assert postprocess_probabilities(logits[0], (40, 24)).shape == (40, 24)


def test_label_classes_keep_class_indices_through_resize_and_augmentation():
    label = np.zeros((48, 40, 4), np.uint8)
    label[5:20, 5:20] = 1
    label[25:40, 5:30] = 2
    label[10:30, 25:38] = 3
    binary = ModelPipeline("cine", 32).labels(label)
    classes = ModelPipeline("cine", 32, label_classes=True).labels(label)
    assert set(torch.unique(binary).tolist()) == {0.0, 1.0}
    assert set(torch.unique(classes).tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert torch.equal(classes > 0, binary > 0)                     # the same pixels, values kept
    pipe = ModelPipeline("cine", 32, augmentation=Augmentation.training("cine"), seed=3, label_classes=True)
    base = pipe.base(np.random.default_rng(0).integers(0, 255, (48, 40, 4), np.uint8), label)
    _, augmented = pipe.train_sample(base["image"], base["label"])
    assert set(torch.unique(augmented).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert len(torch.unique(augmented)) == 4
