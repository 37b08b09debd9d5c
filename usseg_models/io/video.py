"""Video files (MP4, MOV, AVI) as ultrasound cines: decoded by PyAV into the spatial-first layout, and written.

Handheld probes, teaching files and public data sets (EchoNet-Dynamic's AVI clips, lung ultrasound MP4s) export
cines as ordinary video files. This module reads them into the project's cine layout (``docs/DESIGN.md``):

- **Validation before decoding**: :func:`~usseg_models.io.video_probe.probe_video` walks the container in pure
  Python (see :mod:`usseg_models.io.video_probe` for the checks and the frame limit); only a file that passes
  reaches the decoder. Codecs: whatever the FFmpeg build in PyAV's wheel decodes (H.264, HEVC, MPEG-4 part 2,
  MJPEG, raw video, ...); no system FFmpeg is needed. Decoder errors that remain (corrupt compressed data) are
  raised as :class:`~usseg_models.errors.UltrasoundIOError` too, and decoding stops at the frame limit.
- **Layout and colour**: frames are decoded to 8-bit RGB (FFmpeg's conversion: ITU-R BT.601 for SD, the stream's
  matrix when tagged) and returned as ``(X, Y, T, 3)`` with ``original_channel_dim = -1``, like a colour DICOM
  cine. **Grey content** - every pixel of every frame with R, G, B within :data:`GREY_TOLERANCE` (2) levels of each
  other: grey B-mode exported as video, the usual case; lossy codecs such as MJPEG leave a level or two of chroma
  noise - is returned grey, ``(X, Y, T)`` with ``original_channel_dim = "no_channel"``, the values being the
  ITU-R BT.601 luma of the RGB frames (equal to the channels themselves when they are exactly equal, as for H.264
  grey clips). With ``grayscale=True`` a colour clip also becomes grey by BT.601 luma, the DICOM colour rule
  (:func:`usseg_models.io.dicom_pixels.bt601_luma`). Values are ``uint8`` whatever the stream's bit depth.
  Display rotation tags (phone videos) are not applied.
- **Time**: ``frame_time_ms`` is the median step between the decoded frames' presentation times (container time
  base), else ``1000 / average frame rate``; ``fps`` is also reported.
- **Geometry**: a video file has no calibration, so ``spacing`` is 1 (pixels, frame index), the affine is the
  identity and a ``UserWarning`` says so (``meta["spacing_source"] = "default"``). A file always has a T axis
  (``num_frames`` is set, even for one frame), as a multi-frame DICOM.
- :func:`write_video` writes display frames (overlays, test clips) as MP4/MOV/AVI or GIF.

The header-only checks (sniffing, the container walk, the frame limit) live in :mod:`usseg_models.io.video_probe`;
the registry entry is :data:`FORMAT`.

Examples::

    >>> from usseg_models.io.loaders import UltrasoundVideoReader
    >>> from usseg_models.io.video import read_video
    >>> cine, meta = read_video("lung.mp4")                              # doctest: +SKIP
    >>> cine.shape, meta["num_frames"], meta["frame_time_ms"]            # doctest: +SKIP
    ((350, 350, 100), 100, 40.0)
    >>> from monai.transforms import LoadImage
    >>> LoadImage(reader=UltrasoundVideoReader(), image_only=True)("lung.mp4").shape   # doctest: +SKIP
    torch.Size([350, 350, 100])
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from usseg_models.errors import MissingDecoderError, UltrasoundIOError
from usseg_models.io.conventions import bt601_luma
from usseg_models.io.format import Format, file_error
from usseg_models.io.header import probe_video_header
from usseg_models.io.layout import base_meta
from usseg_models.io.video_probe import VIDEO_SUFFIXES, max_video_frames, probe_video, sniff_video

__all__ = ["read_video", "write_video", "FORMAT"]

logger = logging.getLogger(__name__)

#: A frame is grey when no pixel's R, G, B differ by more than this (chroma noise of lossy codecs on grey content).
GREY_TOLERANCE = 2


def _is_grey(rgb: np.ndarray) -> bool:
    """Whether an RGB frame's channels agree within :data:`GREY_TOLERANCE` everywhere."""
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    return bool((hi - lo).max(initial=0) <= GREY_TOLERANCE)


def _import_av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency
        raise MissingDecoderError("reading video files needs PyAV: pip install av") from exc
    return av


def read_video(path: str | os.PathLike, grayscale: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Validate and decode a video file into a cine (layout, colour and metadata: see the module docstring).

    Args:
        path: MP4/MOV/AVI file.
        grayscale: turn a colour clip grey by ITU-R BT.601 luma (a grey clip is returned grey anyway).

    Returns:
        ``(array, meta)``: ``(X, Y, T)`` or ``(X, Y, T, 3)`` ``uint8``; ``meta`` with the keys of
        ``docs/DESIGN.md`` plus ``format="video"``, ``container``, ``codec``, ``fps``, ``spacing_source`` and
        ``one_slice=False``.

    Raises:
        UltrasoundIOError: invalid, truncated or undecodable file, or over the frame limit.
    """
    info = probe_video(path)
    av = _import_av()
    limit = max_video_frames()
    grey_frames: list[np.ndarray] = []
    colour_frames: list[np.ndarray | None] = []
    all_grey = True
    pts: list[float] = []
    rate = None
    try:
        with av.open(os.fspath(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.video:
                raise file_error(path, "video file has no video stream the decoder can read")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            for frame in container.decode(stream):
                if len(grey_frames) >= limit:
                    raise file_error(
                        path, f"video has more than {limit} frames (the limit; set USSEG_MAX_VIDEO_FRAMES)")
                rgb = frame.to_ndarray(format="rgb24")  # (rows, cols, 3)
                all_grey = all_grey and _is_grey(rgb)
                grey_frames.append(bt601_luma(rgb) if all_grey else None)
                colour_frames.append(None if all_grey else rgb)
                if frame.pts is not None and frame.time_base is not None:
                    pts.append(float(frame.pts * frame.time_base))
    except UltrasoundIOError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV raises av.error.* (FFmpegError), OSError, ValueError...
        raise file_error(path, f"cannot decode video ({type(exc).__name__}: {exc})") from exc
    if not grey_frames:
        raise file_error(path, "no frame could be decoded (corrupt or unsupported video stream)")
    if len(grey_frames) != info.num_frames:
        logger.warning("%s: the container declares %d frames, %d were decoded", path, info.num_frames,
                       len(grey_frames))
    if all_grey:
        arr = np.stack(grey_frames, axis=-1).transpose(1, 0, 2)  # (rows, cols, T) -> (X, Y, T)
    else:  # frames before the first colour one were kept grey only: redecode them as RGB from their luma
        rgb = [c if c is not None else np.repeat(g[..., None], 3, axis=-1) for g, c in zip(grey_frames, colour_frames)]
        arr = np.stack(rgb, axis=2).transpose(1, 0, 2, 3)  # (rows, cols, T, 3) -> (X, Y, T, 3)
    arr = np.ascontiguousarray(arr)
    colour = not all_grey
    if colour and grayscale:
        arr, colour = bt601_luma(arr), False
    frame_ms = None
    if len(pts) >= 2:
        steps = np.diff(np.sort(np.asarray(pts)))
        steps = steps[steps > 0]
        if steps.size:
            frame_ms = float(np.median(steps) * 1000.0)
    if frame_ms is None and rate:
        frame_ms = 1000.0 / float(Fraction(rate))
    if frame_ms is None:
        frame_ms = info.frame_time_ms
    msg = f"{os.fspath(path)}: a video file carries no calibration; spacing set to 1 (pixels)"
    logger.debug(msg)
    warnings.warn(msg, UserWarning, stacklevel=2)
    meta = base_meta(path, arr, np.eye(4), colour, "video")
    meta.update(
        container=info.container,
        codec=info.codec,
        spacing_source="default",
        frame_time_ms=None if frame_ms is None else round(frame_ms, 6),
        fps=None if not frame_ms else round(1000.0 / frame_ms, 6),
    )
    return arr, meta


def write_video(
    path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: float = 25.0, codec: str | None = None,
) -> Path:
    """Write display frames to a video file (used for overlays and test clips).

    Args:
        path: ``.mp4``/``.mov`` (H.264 by default, ``yuv420p``: odd sizes are padded by one pixel), ``.avi``
            (MJPEG by default) or ``.gif`` (Pillow, palette per frame).
        frames: ``(T, rows, cols, 3)`` or ``(T, rows, cols)`` uint8 in **display order** (rows first).
        fps: frame rate.
        codec: FFmpeg encoder name to override the default (e.g. ``"mjpeg"``, ``"mpeg4"``, ``"libx264"``).

    Returns:
        the written path.
    """
    path = Path(path)
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise ValueError(f"frames must be (T, rows, cols[, 3]) with T >= 1, got {arr.shape}")
    arr = np.ascontiguousarray(arr.astype(np.uint8, copy=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in arr]
        images[0].save(path, save_all=True, append_images=images[1:], duration=max(int(round(1000 / fps)), 20),
                       loop=0, optimize=False)
        return path
    av = _import_av()
    avi = path.suffix.lower() == ".avi"
    codec = codec or ("mjpeg" if avi else "libx264")
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    rows, cols = arr.shape[1:3]
    if pix_fmt.endswith("420p") and (rows % 2 or cols % 2):
        arr = np.pad(arr, ((0, 0), (0, rows % 2), (0, cols % 2), (0, 0)), mode="edge")
        rows, cols = arr.shape[1:3]
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = cols, rows, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        for f in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path



#: the registry entry (:mod:`usseg_models.io.formats`)
FORMAT = Format("video", VIDEO_SUFFIXES, lambda head, path: sniff_video(head) is not None, read_video,
                probe_video_header, kind="cine", label="MP4/MOV/AVI video")
