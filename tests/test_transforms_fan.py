"""Imaging fan detection: synthetic sectors of known geometry and the real DICOM cines of ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from usseg_models.transforms.fan import MaskOutsideFan, MaskOutsideFand, convex_hull_mask, detect_fan

IOU_MIN = 0.9  # stated threshold for synthetic sectors


def _sector(x=128, y=112, apex=(64, 6), radius=96, half_angle_deg=35.0):
    """Boolean (X, Y) sector opening towards +Y (depth), apex at ``apex`` = (x, y)."""
    xx, yy = np.mgrid[:x, :y].astype(np.float64)
    dx, dy = xx - apex[0], yy - apex[1]
    r = np.hypot(dx, dy)
    ang = np.degrees(np.arctan2(dx, dy))
    return (r <= radius) & (np.abs(ang) <= half_angle_deg) & (dy >= 0)


def _speckle(shape, rng):
    return np.clip(rng.rayleigh(0.25, shape), 0, 1)


def _burn_overlays(img):
    """Static burned-in annotations outside the sector: text-like strokes, a colour bar, a dotted depth scale."""
    out = img.copy()
    for row in range(2, 30, 7):  # four lines of "characters" in the top-left corner
        for col in range(2, 26, 4):
            out[col : col + 2, row : row + 5] = 1.0
    out[118:124, 10:60] = np.linspace(0, 1, 50)[None, :]  # a grey-scale bar at the right edge
    out[110:112, 70:100:5] = 1.0  # dotted depth marks
    out[5:40, 104:106] = 0.8  # a static ECG-like line at the bottom-left
    return out


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def test_synthetic_cine_sector():
    rng = np.random.default_rng(0)
    truth = _sector()
    frames = [_burn_overlays(_speckle(truth.shape, rng) * truth) for _ in range(8)]
    cine = (np.stack(frames, axis=-1) * 255).astype(np.uint8)  # reader layout (X, Y, T)
    fan = detect_fan(cine)
    assert fan.shape == truth.shape and fan.dtype == bool
    assert _iou(fan, truth) >= IOU_MIN
    assert not fan[:30, :32].any()  # burned text excluded
    assert not fan[116:, 8:62].any()  # grey bar excluded
    assert ndimage.label(fan, structure=np.ones((3, 3)))[1] == 1


def test_synthetic_single_image_sector_with_dark_cavity():
    rng = np.random.default_rng(1)
    truth = _sector(half_angle_deg=40.0)
    img = _speckle(truth.shape, rng) * truth
    xx, yy = np.mgrid[: truth.shape[0], : truth.shape[1]]
    img[(xx - 64) ** 2 + (yy - 55) ** 2 < 15**2] = 0.0  # an anechoic cyst inside the fan
    img = _burn_overlays(img)
    fan = detect_fan(img)
    assert _iou(fan, truth) >= IOU_MIN
    assert fan[64, 55]  # the cavity is part of the fan (hole filling / hull)
    assert not fan[:30, :32].any()
    assert ndimage.label(fan, structure=np.ones((3, 3)))[1] == 1


def test_flat_header_band_touching_the_fan_is_excluded():
    rng = np.random.default_rng(4)
    truth = _sector(apex=(64, 14), radius=90)
    img = _speckle(truth.shape, rng) * truth
    img[:, :12] = 0.4  # a flat grey header band across the whole width, 2 px above the apex
    img[10:60:4, 3:8] = 1.0  # text inside the band
    fan = detect_fan(img)
    assert not fan[:, :10].any()
    assert _iou(fan, truth) >= IOU_MIN


def test_cine_thin_moving_bar_is_not_merged():
    rng = np.random.default_rng(5)
    truth = _sector()
    frames = []
    for k in range(6):
        f = _speckle(truth.shape, rng) * truth
        f[121:127, 4:64] = np.linspace(0, 1, 60)[None, :] * (0.5 + 0.1 * k)  # a grey bar that changes
        frames.append(f)
    fan = detect_fan(np.stack(frames, axis=-1))
    assert not fan[121:].any()
    assert _iou(fan, truth) >= IOU_MIN


def test_linear_field_touching_the_border_keeps_the_border():
    rng = np.random.default_rng(6)
    truth = np.zeros((96, 80), bool)
    truth[:, 12:] = True  # a linear probe's image filling the width and the bottom of the frame
    cine = np.stack([_speckle(truth.shape, rng) * truth for _ in range(4)], axis=-1)
    cine[10:40, 2:8] = 1.0  # static header text
    fan = detect_fan(cine)
    assert fan[0, 40] and fan[-1, 40] and fan[48, -1]  # border pixels are not eroded
    assert _iou(fan, truth) >= 0.95 and not fan[:, :10].any()


def test_frozen_cine_falls_back_to_image_rule():
    rng = np.random.default_rng(2)
    truth = _sector()
    frame = _burn_overlays(_speckle(truth.shape, rng) * truth)
    fan = detect_fan(np.repeat(frame[..., None], 4, axis=-1))  # no temporal change at all
    assert _iou(fan, truth) >= IOU_MIN


def test_convex_hull_and_validation():
    m = np.zeros((20, 20), bool)
    m[2, 2] = m[2, 17] = m[17, 10] = True
    hull = convex_hull_mask(m)
    assert hull[8, 10] and not hull[17, 2] and hull.sum() > 50
    with pytest.raises(ValueError, match="shape"):
        detect_fan(np.zeros((4, 4, 4, 4)))
    blank = detect_fan(np.zeros((32, 32)))
    assert blank.all()  # nothing found -> no masking


def test_mask_outside_fan_transforms():
    rng = np.random.default_rng(3)
    truth = _sector()
    cine = np.stack([_burn_overlays(_speckle(truth.shape, rng) * truth) for _ in range(4)], axis=-1)
    rgb = torch.from_numpy(np.repeat(cine[None], 3, axis=0)).float()  # (3, X, Y, T)
    out = MaskOutsideFan()(rgb)
    assert out.shape == rgb.shape
    assert float(out[:, :30, :32].abs().sum()) == 0.0
    assert torch.equal(out[:, 64, 60], rgb[:, 64, 60])
    d = MaskOutsideFand(["image"], mask_key="fan")({"image": cine[None].astype(np.float32)})
    assert d["image"].shape == (1, *cine.shape) and d["fan"].shape == truth.shape
    assert _iou(d["fan"], truth) >= IOU_MIN


@pytest.fixture(scope="module")
def read_grey():
    dicom = pytest.importorskip("usseg_models.io.dicom_pixels")

    def _read(path):
        array, _meta = dicom.read_dicom(path, grayscale=True)
        return array

    return _read


@pytest.mark.parametrize(
    "name, frames, size, excluded, included",
    [
        # SonoSite apical 4-chamber: text top-left, parameter column at the right, menu bar at the bottom
        (
            "examples_ybr_color.dcm",
            30,
            (320, 240),
            [(0, 40, 0, 30), (295, 320, 10, 130), (0, 320, 225, 240)],
            [(160, 110), (120, 150)],
        ),
        # colour-Doppler echo: text block left, colour bar right, ECG trace bottom; sector apex near the top
        (
            "US-PAL-8-10x-echo.dcm",
            10,
            (600, 430),
            [(0, 110, 0, 270), (540, 600, 20, 170), (40, 340, 360, 400)],
            [(300, 200), (300, 60), (180, 260)],
        ),
    ],
)
def test_real_dicom_cines(us_dicom_dir, read_grey, name, frames, size, excluded, included):
    cine = read_grey(us_dicom_dir / name)
    assert cine.shape == (*size, frames)
    fan = detect_fan(cine)
    frac = fan.mean()
    assert 0.15 < frac < 0.6, f"fan covers {frac:.2f} of the image"
    assert ndimage.label(fan, structure=np.ones((3, 3)))[1] == 1
    for x0, x1, y0, y1 in excluded:
        assert not fan[x0:x1, y0:y1].any(), f"fan reaches the overlay region x {x0}:{x1}, y {y0}:{y1}"
    for x, y in included:
        assert fan[x, y]
    # the excluded regions really hold burned-in overlays: bright pixels that never change
    static_bright = (cine.max(axis=2) > 60) & (cine.std(axis=2) < 1)
    for x0, x1, y0, y1 in excluded:
        assert static_bright[x0:x1, y0:y1].sum() > 20


def test_long_cine_is_subsampled_to_the_same_fan():
    rng = np.random.default_rng(7)
    truth = _sector()
    cine = (np.stack([_speckle(truth.shape, rng) * truth for _ in range(40)], axis=-1) * 255).astype(np.uint8)
    full = detect_fan(cine, max_frames=40)
    sub = detect_fan(cine, max_frames=8)
    assert _iou(full, sub) > 0.97 and _iou(sub, truth) >= IOU_MIN
