"""The B-mode signal chain of the synthetic simulator: acoustic settings, speckle, PSF, gain and log compression.

The chain follows the textbook B-mode model (e.g. Szabo, *Diagnostic Ultrasound Imaging*, ch. 8-10), on the beam
grid of :class:`~usseg_models.data.synthetic_geometry.ScanConverter` (range sample ``m``, line ``k``). This module
holds steps 1-5; :func:`usseg_models.data.synthetic.simulate_cine` runs them, then step 6 (``ScanConverter.convert``).

1. **Echogenicity** ``E(m, k; t)`` (backscattered intensity relative to soft tissue): a smooth log-normal tissue
   texture (``texture_db`` standard deviation, correlation ``texture_corr_mm``), a bright sub-cutaneous layer
   below the probe face, and the moving targets of :mod:`usseg_models.data.synthetic_targets` (hypoechoic
   lesion, anechoic chamber with a bright wall). Tissue and targets move with the programmed motion.
2. **Scatterers**: a circular complex Gaussian field ``s`` (unit variance, white) -- fully developed speckle.
   Between frames the field moves with the tissue (exact sub-sample shift by a Fourier phase ramp) and
   decorrelates: ``s_t = rho * shift(s_{t-1}) + sqrt(1 - rho^2) * n_t`` with fresh ``n_t`` (out-of-plane motion),
   so the complex correlation at lag ``j`` is ``rho^j`` and the intensity correlation ``rho^(2j)``.
3. **Point-spread function** (separable, unit energy): the transmitted pulse is a Gaussian-modulated sinusoid
   ``p(t) = exp(-t^2 / 2 sigma_t^2) cos(2 pi f0 t)`` with ``sigma_t = 1 / (2 pi sigma_f)`` and
   ``sigma_f = B f0 / (2 sqrt(2 ln 2))`` (``B`` = -6 dB fractional bandwidth); after quadrature demodulation at
   ``f0`` its complex baseband is the Gaussian envelope, of axial width ``sigma_z = c sigma_t / 2``. The lateral
   beam profile is Gaussian with FWHM ``lambda / D`` radians (sector, aperture ``D``) or ``lambda F#`` mm (linear).
   IQ signal: ``iq = h * (sqrt(E) s)`` (convolution), whose modulus is Rayleigh distributed where ``E`` is uniform.
4. **Attenuation and gain**: round trip ``10^(-2 alpha f0 d / 20)`` at depth ``d`` (cm), additive complex
   Gaussian electronic noise (``noise_db``), then time-gain compensation ``10^(+g 2 alpha f0 d / 20)``
   (``g = tgc_compensation``; 1 compensates the nominal attenuation exactly).
5. **Envelope and log compression**: ``A = |iq|``; grey ``= 255 clip((20 log10 A - white_level_db + DR) / DR, 0, 1)``
   with ``DR = dynamic_range_db`` (tissue RMS amplitude is 0 dB).
6. **Scan conversion** to a square pixel grid (bilinear on the compressed image), 0 outside the fan.

Rayleigh amplitude has ``mean / std = sqrt(pi / (4 - pi)) = 1.913`` (:data:`RAYLEIGH_SNR`); the envelope of a
uniform region (before log compression) reproduces it, which the tests check.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from usseg_models.data.synthetic_geometry import ProbeGeometry, ScanConverter
from usseg_models.data.synthetic_targets import Scene

__all__ = ["RAYLEIGH_SNR", "UltrasoundConfig", "log_compress"]

logger = logging.getLogger(__name__)

#: mean / standard deviation of a Rayleigh-distributed amplitude.
RAYLEIGH_SNR = math.sqrt(math.pi / (4 - math.pi))


@dataclass(frozen=True)
class UltrasoundConfig:
    """Acoustic, system and display settings of the simulation (units in the names).

    Args:
        center_frequency_mhz: transmit centre frequency ``f0``.
        fractional_bandwidth: -6 dB two-way bandwidth over ``f0`` (``B``).
        speed_of_sound_m_s: ``c``.
        aperture_mm: active aperture ``D`` of a sector probe (lateral FWHM ``lambda / D`` rad).
        f_number: F-number of a linear probe (lateral FWHM ``lambda F#`` mm).
        attenuation_db_cm_mhz: one-way attenuation ``alpha``.
        tgc_compensation: fraction ``g`` of the nominal round-trip attenuation removed by the TGC.
        noise_db: RMS electronic noise relative to unit tissue backscatter at the face, before TGC.
        dynamic_range_db: log-compression display range ``DR``.
        white_level_db: amplitude (dB re tissue RMS) shown as grey 255.
        texture_db: standard deviation of the smooth tissue echogenicity texture.
        texture_corr_mm: correlation length (Gaussian sigma) of that texture.
        layer_db: echogenicity of the bright layer 2-6 mm below the probe face.
        frame_rate_hz: frames per second (``FrameTime = 1000 / frame_rate_hz`` ms).
        speckle_correlation: ``rho`` in ``[0, 1]``, complex frame-to-frame correlation of the scatterers.
        samples_per_sigma: beam-grid samples per PSF standard deviation (axially and laterally, >= 1).
    """

    center_frequency_mhz: float = 2.5
    fractional_bandwidth: float = 0.5
    speed_of_sound_m_s: float = 1540.0
    aperture_mm: float = 20.0
    f_number: float = 2.0
    attenuation_db_cm_mhz: float = 0.5
    tgc_compensation: float = 1.0
    noise_db: float = -65.0
    dynamic_range_db: float = 60.0
    white_level_db: float = 24.0
    texture_db: float = 2.0
    texture_corr_mm: float = 4.0
    layer_db: float = 6.0
    frame_rate_hz: float = 30.0
    speckle_correlation: float = 0.9
    samples_per_sigma: float = 1.0

    def __post_init__(self) -> None:
        positive = (
            "center_frequency_mhz", "fractional_bandwidth", "speed_of_sound_m_s", "aperture_mm", "f_number",
            "dynamic_range_db", "texture_corr_mm", "frame_rate_hz",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"UltrasoundConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.attenuation_db_cm_mhz < 0 or self.texture_db < 0 or self.tgc_compensation < 0:
            raise ValueError("attenuation_db_cm_mhz, texture_db and tgc_compensation must be >= 0")
        if not 0 <= self.speckle_correlation <= 1:
            raise ValueError(f"speckle_correlation must be in [0, 1], got {self.speckle_correlation}")
        if self.samples_per_sigma < 1:
            raise ValueError(f"samples_per_sigma must be >= 1, got {self.samples_per_sigma}")

    @property
    def wavelength_mm(self) -> float:
        return self.speed_of_sound_m_s / (self.center_frequency_mhz * 1e3)

    @property
    def axial_sigma_mm(self) -> float:
        """``sigma_z = c sigma_t / 2`` of the demodulated pulse-echo envelope."""
        sigma_f = self.fractional_bandwidth * self.center_frequency_mhz * 1e6 / (2 * math.sqrt(2 * math.log(2)))
        sigma_t = 1.0 / (2 * math.pi * sigma_f)
        return self.speed_of_sound_m_s * 1e3 * sigma_t / 2

    def lateral_sigma(self, kind: str) -> float:
        """Lateral PSF sigma: radians for a sector probe, mm for a linear one."""
        fwhm = self.wavelength_mm / self.aperture_mm if kind == "sector" else self.wavelength_mm * self.f_number
        return fwhm / (2 * math.sqrt(2 * math.log(2)))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Unit-energy sampled Gaussian (``sum k^2 = 1``), half-width 4 sigma; sigma in samples."""
    half = max(1, int(math.ceil(4 * sigma)))
    n = np.arange(-half, half + 1, dtype=float)
    k = np.exp(-(n**2) / (2 * sigma**2))
    return k / np.sqrt(np.sum(k**2))


class _Texture:
    """Smooth log-normal tissue texture on a Cartesian grid, sampled (moved) at arbitrary points."""

    def __init__(self, rng: np.random.Generator, geometry: ProbeGeometry, corr_mm: float, pad_mm: float) -> None:
        width, height = geometry.extent_mm()
        self.step = corr_mm / 2
        self.x0 = -width / 2 - pad_mm
        self.z0 = geometry.top_mm() - pad_mm
        nx = int(math.ceil((width + 2 * pad_mm) / self.step)) + 1
        nz = int(math.ceil((height + 2 * pad_mm) / self.step)) + 1
        field_ = ndimage.gaussian_filter(rng.standard_normal((nz, nx)), sigma=2.0, mode="wrap")
        self.field = field_ / max(float(field_.std()), 1e-12)

    def __call__(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        coords = np.stack([(z - self.z0) / self.step, (x - self.x0) / self.step])
        return ndimage.map_coordinates(self.field, coords, order=1, mode="nearest")


def _fourier_shift(field_: np.ndarray, shift_m: float, shift_k: float) -> np.ndarray:
    """Periodic sub-sample shift of a 2D complex field (all-pass: keeps a white field white)."""
    fm = np.fft.fftfreq(field_.shape[0]).astype(np.float32)[:, None]
    fk = np.fft.fftfreq(field_.shape[1]).astype(np.float32)[None, :]
    ramp = np.exp(np.complex64(-2j * math.pi) * (fm * np.float32(shift_m) + fk * np.float32(shift_k)))
    return sp_fft.ifft2(sp_fft.fft2(field_) * ramp).astype(np.complex64, copy=False)


def _complex_normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Circular complex Gaussian with unit variance (``E|s|^2 = 1``)."""
    out = rng.standard_normal((*shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    return out * np.float32(math.sqrt(0.5))


def _convolve_complex(data: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    out = np.empty_like(data)
    kernel = kernel.astype(np.float32)
    out.real = ndimage.convolve1d(data.real, kernel, axis=axis, mode="wrap")
    out.imag = ndimage.convolve1d(data.imag, kernel, axis=axis, mode="wrap")
    return out


def _beam_grid(geometry: ProbeGeometry, config: UltrasoundConfig, size: int):
    """Beam grid sampling the PSF with >= ``samples_per_sigma`` samples per sigma (>= ``size`` lines) + kernels."""
    sig_z = config.axial_sigma_mm
    sig_lat = config.lateral_sigma(geometry.kind)
    span = 2 * geometry.half_angle if geometry.kind == "sector" else geometry.width_mm
    num_samples = sp_fft.next_fast_len(int(math.ceil(geometry.depth_mm * config.samples_per_sigma / sig_z)) + 1)
    num_lines = max(size, int(math.ceil(span * config.samples_per_sigma / sig_lat)) + 1)
    sc = ScanConverter(geometry, num_samples, num_lines, size)
    kernel_z = _gaussian_kernel(sig_z / sc.range_step_mm)
    kernel_x = _gaussian_kernel(sig_lat / sc.line_step)
    logger.debug("beam grid %d x %d, PSF %d x %d taps", num_samples, num_lines, kernel_z.size, kernel_x.size)
    return sc, kernel_z, kernel_x


def _weighted_scatterers(
    scene: Scene, sc: ScanConverter, config: UltrasoundConfig, texture: _Texture | None, rng, num_frames: int
) -> np.ndarray:
    """``sqrt(E) s`` per frame (steps 1-2 of the module docstring), complex64 ``(T, M, L)``."""
    bx, bz = sc.beam_points_mm
    depth_mm = sc.sample_depth_mm
    layer = (10 ** (config.layer_db / 10 * ((depth_mm >= 2.0) & (depth_mm <= 6.0))))[:, None]
    motion = scene.tissue_motion
    geometry = sc.geometry
    # lateral size of one line step at mid-field, to express the tissue shift in lines
    lateral_mm = sc.line_step
    if geometry.kind == "sector":
        lateral_mm *= geometry.face_depth_mm + geometry.depth_mm / 2
    rho = config.speckle_correlation
    innovation = np.float32(math.sqrt(max(0.0, 1 - rho**2)))
    shape = (sc.num_samples, sc.num_lines)
    scat = _complex_normal(rng, shape)
    amplitude = np.empty((num_frames, *shape), dtype=np.complex64)
    prev_u = motion(0.0)
    for t in range(num_frames):
        ux, uz = motion(float(t))
        if t > 0:
            du_x, du_z = ux - prev_u[0], uz - prev_u[1]
            if du_x or du_z:  # speckle moves with the tissue (projected on the beam grid at mid-field)
                scat = _fourier_shift(scat, du_z / sc.range_step_mm, du_x / lateral_mm)
            scat = np.float32(rho) * scat + innovation * _complex_normal(rng, shape)
        prev_u = (ux, uz)
        echo = scene.intensity_factor(bx, bz, float(t)) * layer
        if texture is not None:
            echo = echo * 10 ** (config.texture_db * texture(bx - ux, bz - uz) / 10)
        amplitude[t] = np.sqrt(echo).astype(np.float32) * scat
    return amplitude


def _pulse_echo_envelope(
    amplitude: np.ndarray, sc: ScanConverter, config: UltrasoundConfig, kernel_z, kernel_x, rng
) -> np.ndarray:
    """PSF convolution, attenuation, noise, TGC and envelope detection (steps 3-5), float32 ``(T, M, L)``."""
    loss_db = 2 * config.attenuation_db_cm_mhz * config.center_frequency_mhz * sc.sample_depth_mm / 10
    iq = _convolve_complex(amplitude, kernel_z, axis=1)
    iq = _convolve_complex(iq, kernel_x, axis=2)
    iq *= (10 ** (-loss_db / 20)).astype(np.float32)[:, None]
    noise_rms = 10 ** (config.noise_db / 20)
    if noise_rms > 0:
        iq += np.float32(noise_rms) * _complex_normal(rng, iq.shape)
    return np.abs(iq) * (10 ** (config.tgc_compensation * loss_db / 20)).astype(np.float32)[:, None]


def log_compress(envelope: np.ndarray, config: UltrasoundConfig) -> np.ndarray:
    """Grey levels ``255 clip((20 log10 A - white_level_db + DR) / DR, 0, 1)`` (float) of an envelope ``A``."""
    db = 20 * np.log10(np.maximum(envelope, 1e-12))
    return 255.0 * np.clip((db - config.white_level_db + config.dynamic_range_db) / config.dynamic_range_db, 0, 1)
