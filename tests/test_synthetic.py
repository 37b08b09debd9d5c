"""The synthetic B-mode simulator: determinism, programmed truth, speckle physics and fan geometry.

Statistical tolerances are justified where they are used; every figure is computed from the simulator's
output (no stored reference values).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from usseg_models.data.synthetic import RAYLEIGH_SNR, default_config, simulate_cine, simulate_image
from usseg_models.data.synthetic_geometry import ProbeGeometry
from usseg_models.data.synthetic_targets import Chamber, Lesion, Scene, TissueMotion, random_scene


def _uniform_config(**overrides):
    """Uniform tissue: no texture, no bright layer, no electronic noise (TGC compensates attenuation exactly)."""
    base = dict(texture_db=0.0, layer_db=0.0, noise_db=-300.0, tgc_compensation=1.0)
    base.update(overrides)
    return default_config("sector", **base)


def _interior(envelope: np.ndarray, margin_samples: int = 20, margin_lines: int = 10) -> np.ndarray:
    """Drop the beam-grid borders (periodic wrap of the PSF convolution touches a few samples there)."""
    return envelope[:, margin_samples:-margin_samples, margin_lines:-margin_lines]


# -- determinism --------------------------------------------------------------------------------------------
def test_same_seed_same_cine_other_seed_differs():
    a = simulate_cine(num_frames=4, size=48, targets=("chamber", "lesion"), seed=11)
    b = simulate_cine(num_frames=4, size=48, targets=("chamber", "lesion"), seed=11)
    c = simulate_cine(num_frames=4, size=48, targets=("chamber", "lesion"), seed=12)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.describe() == b.describe()
    np.testing.assert_array_equal(a.fan_mask, c.fan_mask)
    assert (a.image != c.image)[a.fan_mask].mean() > 0.5  # speckle differs almost everywhere inside the fan
    assert not np.array_equal(a.truth[0].centre_mm, c.truth[0].centre_mm)


def test_shapes_dtypes_and_layout():
    cine = simulate_cine(num_frames=3, size=40, geometry="linear", targets=("lesion",), seed=2)
    assert cine.image.shape == cine.label.shape == (40, 40, 3)
    assert cine.image.dtype == cine.label.dtype == np.uint8
    assert set(np.unique(cine.label)) <= {0, 1} and cine.label.any()
    assert cine.fan_mask.shape == (40, 40)
    assert cine.frames_tyx().shape == (3, 40, 40)
    np.testing.assert_array_equal(cine.frames_tyx()[1], cine.image[:, :, 1].T)  # (X, Y) = (cols, rows)
    image = simulate_image(size=40, seed=2)
    assert image.image.shape == (40, 40, 1) and image.num_frames == 1


# -- programmed truth ----------------------------------------------------------------------------------------
# placed off the image diagonal so that a transposed (X <-> Y) label would land on plain tissue
LESION = Lesion(cx0=-35.0, cz0=100.0, a0=12.0, b0=9.0, psi0=0.3, dx=4.0, dz=3.0, eps=0.12, dpsi=0.1, period=8.0,
                phase=0.5)
CHAMBER = Chamber(cx0=22.0, cz0=75.0, a0=12.0, b0=16.0, ka=0.3, kb=0.15, dx=2.0, dz=-3.0, wall_mm=5.0, period=8.0)
MOTION = TissueMotion(ux=1.0, uz=-1.5, period=10.0, phase=0.2)


@pytest.fixture(scope="module")
def programmed():
    scene = Scene((LESION, CHAMBER), MOTION)
    return simulate_cine(num_frames=8, size=128, geometry="sector", scene=scene, seed=3)


def test_truth_is_the_documented_closed_form(programmed):
    lesion, chamber = programmed.truth
    for t in range(8):
        p = 2 * math.pi * t / 8.0 + 0.5
        u = math.sin(2 * math.pi * t / 10.0 + 0.2)
        np.testing.assert_allclose(lesion.centre_mm[t], [-35 + 4 * math.sin(p) + u, 100 + 3 * math.cos(p) - 1.5 * u])
        squash = 0.12 * math.sin(p)
        np.testing.assert_allclose(lesion.semi_axes_mm[t], [12 * (1 + squash), 9 * (1 - squash)])
        s = (1 - math.cos(2 * math.pi * t / 8.0)) / 2
        np.testing.assert_allclose(chamber.semi_axes_mm[t], [12 * (1 - 0.3 * s), 16 * (1 - 0.15 * s)])
        np.testing.assert_allclose(chamber.centre_mm[t], [22 + 2 * s + u, 75 - 3 * s - 1.5 * u])
        np.testing.assert_allclose(chamber.area_mm2[t], math.pi * np.prod(chamber.semi_axes_mm[t]))
    np.testing.assert_allclose(chamber.area_px, chamber.area_mm2 / programmed.pixel_mm**2)


def test_mask_area_and_centroid_follow_the_programmed_motion(programmed):
    # Each target's mask is the connected component of the label containing its programmed centre.
    # Tolerances: counting pixel centres inside an ellipse of a few hundred pixels misses the exact area by a
    # boundary term of a few pixels (Gauss circle problem, error ~ perimeter^(2/3)), i.e. ~1-2 %; the centroid of
    # a symmetric region is off by far less than a pixel. The chamber's area changes by ~40 % over the cycle and
    # the lesion moves by ~8 px, so masks that did not follow the motion would fail by a wide margin.
    components, _ = ndimage.label(programmed.label[:, :, 0])
    assert components.max() == 2
    for truth in programmed.truth:
        counts, rel_errors = [], []
        for t in range(programmed.num_frames):
            comps, _ = ndimage.label(programmed.label[:, :, t])
            cx, cy = truth.centre_px[t]
            component = comps[int(round(cx)), int(round(cy))]
            assert component > 0, (truth.kind, t)
            mask = comps == component
            count = int(mask.sum())
            counts.append(count)
            rel_errors.append(abs(count - truth.area_px[t]) / truth.area_px[t])
            xs, ys = np.nonzero(mask)
            assert abs(xs.mean() - cx) < 0.25 and abs(ys.mean() - cy) < 0.25, (truth.kind, t)
        assert max(rel_errors) < 0.04 and np.mean(rel_errors) < 0.02, (truth.kind, rel_errors)
        if truth.area_px.min() < 0.9 * truth.area_px.max():  # the lesion's squash keeps its area nearly constant
            assert np.corrcoef(counts, truth.area_px)[0, 1] > 0.95
    chamber = programmed.truth[1]
    assert chamber.area_px.min() < 0.7 * chamber.area_px.max()  # the test exercises a real contraction


def test_image_is_dark_where_the_label_is(programmed):
    # The label must sit on the rendered target (catches X/Y transposition and offset errors).
    for t in (0, 4):
        image = programmed.image[:, :, t].astype(float)
        comps, _ = ndimage.label(programmed.label[:, :, t])
        for truth in programmed.truth:
            cx, cy = truth.centre_px[t]
            component = comps[int(round(cx)), int(round(cy))]
            assert component > 0, (truth.kind, t)  # the label covers the programmed centre
            mask = comps == component
            inner = ndimage.binary_erosion(mask, iterations=2)
            ring = ndimage.binary_dilation(mask, iterations=6) & ~ndimage.binary_dilation(mask, iterations=2)
            # lesion: -9 dB = -38 grey levels at 60 dB over 255; cavity: -35 dB, clipped near black
            assert image[inner].mean() < image[ring].mean() - 20, (truth.kind, t)


def test_random_scene_keeps_targets_inside_the_fan():
    geometry = ProbeGeometry("sector")
    scene = random_scene(np.random.default_rng(4), geometry, ("chamber", "lesion"), num_frames=24)
    for i, target in enumerate(scene.targets):
        for t in range(24):
            grow = target.wall(t) if isinstance(target, Chamber) else 0.0
            bx, bz = scene.state(i, t).boundary(64, grow_mm=grow)
            assert geometry.inside(bx, bz).all()
    with pytest.raises(ValueError, match="unknown target kind"):
        random_scene(np.random.default_rng(0), geometry, ("kidney",))


# -- speckle physics -----------------------------------------------------------------------------------------
def test_uniform_speckle_envelope_has_rayleigh_snr():
    # Fully developed speckle: the envelope |iq| of circular complex Gaussian IQ data is Rayleigh distributed,
    # mean/std = sqrt(pi / (4 - pi)) = 1.913. Four independent frames (rho = 0) give ~130 000 envelope samples
    # with a correlation cell of ~2 x 2 samples, i.e. ~30 000 independent speckle cells; the SNR estimate then
    # scatters by ~0.3 % between seeds (0.24 % measured over 12 seeds), so 2 % is a > 6 sigma bound, while a
    # non-Rayleigh envelope (e.g. 10 % coherent component, smoothing before detection) misses it by more.
    cine = simulate_cine(4, 32, "sector", scene=Scene(), config=_uniform_config(speckle_correlation=0.0), seed=7,
                         keep_envelope=True)
    env = _interior(cine.envelope).astype(np.float64)
    snr = env.mean() / env.std()
    assert snr == pytest.approx(RAYLEIGH_SNR, rel=0.02)
    # Rayleigh intensity is exponential: E[I^2] = 2 E[I]^2 (same 6-sigma reasoning, ~2 % relative noise)
    intensity = env**2
    assert (intensity**2).mean() / intensity.mean() ** 2 == pytest.approx(2.0, rel=0.06)


def test_speckle_correlation_length_matches_the_psf():
    # For a Gaussian PSF of standard deviation sigma (samples), the intensity autocorrelation of the speckle is
    # |rho_iq(d)|^2 = exp(-d^2 / (2 sigma^2)) (Goodman); at lag 1 that is ~0.6. Over 8 seeds the estimate scattered
    # by 0.006 (axial) and 0.007 (lateral) around it (1 sd), so +-0.04 is a ~6 sd bound; a PSF twice as wide or
    # half as wide would move the lag-1 correlation by > 0.2.
    config = _uniform_config(speckle_correlation=0.0)
    cine = simulate_cine(2, 32, "sector", scene=Scene(), config=config, seed=8, keep_envelope=True)
    intensity = _interior(cine.envelope).astype(np.float64) ** 2
    num_samples = cine.envelope.shape[1]
    range_step = cine.geometry.depth_mm / (num_samples - 1)
    line_step = 2 * cine.geometry.half_angle / (cine.envelope.shape[2] - 1)
    for axis, sigma in ((1, config.axial_sigma_mm / range_step), (2, config.lateral_sigma("sector") / line_step)):
        a = np.moveaxis(intensity, axis, 0)
        measured = np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]
        assert measured == pytest.approx(math.exp(-1 / (2 * sigma**2)), abs=0.04), axis


def test_frame_to_frame_speckle_correlation_decreases_with_lag():
    # s_t = rho s_{t-1} + sqrt(1 - rho^2) n_t gives intensity correlation rho^(2 lag) (0.81, 0.66, 0.53, 0.43
    # for rho = 0.9). Over 10 seeds the estimates scattered by 0.005, 0.008, 0.010, 0.013 (1 sd, lags 1-4), so
    # +-0.05 is a ~4 sd bound; using rho itself as the intensity correlation would be off by 0.09 at lag 1.
    rho = 0.9
    cine = simulate_cine(5, 32, "sector", scene=Scene(), config=_uniform_config(speckle_correlation=rho), seed=9,
                         keep_envelope=True)
    intensity = _interior(cine.envelope).astype(np.float64) ** 2
    corr = [np.corrcoef(intensity[:-lag].ravel(), intensity[lag:].ravel())[0, 1] for lag in (1, 2, 3, 4)]
    assert all(0 < c < 1 for c in corr)
    assert all(a > b for a, b in zip(corr, corr[1:]))
    np.testing.assert_allclose(corr, [rho ** (2 * lag) for lag in (1, 2, 3, 4)], atol=0.05)


def test_image_speckle_decorrelates_gradually_with_tissue_motion():
    # Default scene (moving targets, tissue motion, texture): correlation of the displayed frames inside the fan
    # stays in (0, 1) and falls with the lag.
    cine = simulate_cine(5, 64, "sector", targets=("lesion",), seed=10)
    frames = cine.image[cine.fan_mask].astype(np.float64)  # (pixels, T)
    corr = [np.corrcoef(frames[:, 0], frames[:, lag])[0, 1] for lag in (1, 2, 3, 4)]
    assert all(0 < c < 1 for c in corr)
    assert all(a > b for a, b in zip(corr, corr[1:]))


def test_attenuation_without_tgc_follows_the_round_trip_law():
    # Without TGC the mean echo intensity falls by 2 alpha f0 dB per cm of depth (0.5 dB/cm/MHz x 2.5 MHz x 2
    # = 2.5 dB/cm, 30 dB over 12 cm); the fit over ~500 depths of ~80 speckle cells each is good to ~1 %.
    config = _uniform_config(tgc_compensation=0.0, speckle_correlation=0.0)
    cine = simulate_cine(2, 32, "sector", scene=Scene(), config=config, seed=6, keep_envelope=True)
    env = cine.envelope[:, 5:-5, 5:-5].astype(np.float64)
    depth_cm = np.linspace(0, cine.geometry.depth_mm, cine.envelope.shape[1])[5:-5] / 10
    level_db = 10 * np.log10((env**2).mean(axis=(0, 2)))
    slope = np.polyfit(depth_cm, level_db, 1)[0]
    expected = -2 * config.attenuation_db_cm_mhz * config.center_frequency_mhz
    assert slope == pytest.approx(expected, rel=0.05)


def test_log_compression_maps_tissue_to_the_expected_grey_level():
    # Rayleigh amplitude with unit mean power has E[20 log10 A] = -10 gamma / ln 10 = -2.507 dB (gamma: Euler's
    # constant), so uniform tissue shows a mean grey of 255 (-2.507 - white_level + DR) / DR = 142.3 with the
    # defaults; bilinear scan conversion averages identically distributed values and keeps that mean. The mean
    # over ~3 000 fan pixels (~1 000 speckle cells of sd 5.6 dB = 24 grey levels) is good to ~1 grey level.
    config = _uniform_config()
    cine = simulate_cine(2, 64, "sector", scene=Scene(), config=config, seed=4)
    inside = ndimage.binary_erosion(cine.fan_mask, iterations=3)
    expected = 255 * (-10 * 0.5772156649 / math.log(10) - config.white_level_db + config.dynamic_range_db) / (
        config.dynamic_range_db
    )
    assert cine.image[inside].mean() == pytest.approx(expected, abs=3.0)


def test_fan_detection_agrees_with_the_simulated_fan():
    # Cross-check with the project's fan detector (usseg_models.transforms.fan), when it is there.
    fan = pytest.importorskip("usseg_models.transforms.fan")
    for geometry in ("sector", "linear"):
        cine = simulate_cine(8, 96, geometry, targets=("chamber",), seed=1)
        detected = np.asarray(fan.detect_fan(cine.image)).astype(bool)
        iou = (detected & cine.fan_mask).sum() / (detected | cine.fan_mask).sum()
        assert iou > 0.9, (geometry, iou)


# -- geometry -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("geometry", ["sector", "linear"])
def test_pixels_outside_the_fan_are_zero(geometry):
    cine = simulate_cine(3, 64, geometry, targets=("lesion",), seed=5)
    outside = ~cine.fan_mask
    assert outside.any() and cine.fan_mask.mean() > 0.3
    assert not cine.image[outside].any()
    assert not cine.label[outside].any()
    assert cine.image[cine.fan_mask].mean() > 40  # tissue inside the fan is visible
    # the fan is exactly the geometry's field of view (pixel centres, allowing for the border rounding)
    cols, rows = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")  # (X, Y) grid
    x0 = -(64 - 1) / 2 * cine.pixel_mm
    x, z = x0 + cols * cine.pixel_mm, cine.geometry.top_mm() + rows * cine.pixel_mm
    inner = cine.geometry.inside(x, z, margin_mm=1e-6)
    assert cine.fan_mask[inner].all()
    assert not cine.fan_mask[~cine.geometry.inside(x, z, margin_mm=-1e-6)].any()


def test_sector_image_is_black_outside_the_sector_and_the_fan_box_is_centred():
    cine = simulate_cine(1, 64, "sector", targets=(), seed=1)
    fan = cine.fan_mask
    assert not fan[0, 0] and not fan[-1, 0] and not fan[0, -1] and not fan[-1, -1]
    np.testing.assert_array_equal(fan, fan[::-1, :])  # symmetric about the central line


# -- validation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_frames=0), "num_frames"),
        (dict(size=8), "size"),
        (dict(geometry="phased"), "geometry"),
        (dict(targets=("kidney",)), "unknown target kind"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_cine(**{"num_frames": 1, "size": 32, **kwargs})


def test_bad_settings_raise_value_error():
    with pytest.raises(ValueError, match="speckle_correlation"):
        default_config("sector", speckle_correlation=1.5)
    with pytest.raises(ValueError, match="center_frequency_mhz"):
        default_config("sector", center_frequency_mhz=0)
    with pytest.raises(ValueError, match="sector_angle_deg"):
        ProbeGeometry("sector", sector_angle_deg=190)
    with pytest.raises(ValueError, match="eps"):
        Lesion(0, 50, 5, 5, eps=1.2)
    with pytest.raises(ValueError, match="semi-axes"):
        Chamber(0, 50, 0, 5)
