"""Header-only validation of video files (MP4/MOV/AVI): the container walked in pure Python, nothing decoded.

- **Containers**: ISO base media (``.mp4``, ``.m4v``, ``.mov``; QuickTime included) and RIFF AVI (``.avi``), found
  by their content (:func:`sniff_video`), not their name.
- **Checks** (:func:`probe_video`): the container's box/chunk structure is walked and every size checked against
  the file size; the video track's frame count, frame size and codec are read from the header, and for MP4/MOV
  every frame's data range (sample tables) must lie inside the file. A truncated file (a download cut short, a
  recorder that died before writing the ``moov`` index) or a file of any other kind raises
  :class:`~usseg_models.errors.UltrasoundIOError` naming the problem, so no decoder ever sees it.
- **Frame limit**: at most :data:`MAX_VIDEO_FRAMES` frames (default 3000: two minutes at 25 frames/s; the
  environment variable ``USSEG_MAX_VIDEO_FRAMES`` changes it, see :func:`max_video_frames`) and at most
  :data:`usseg_models.io.validate.MAX_DECODED_BYTES` of decoded pixels. A longer clip is refused before decoding
  (message names the limit); trim it first (e.g. ``ffmpeg -t``).

Decoding and encoding (PyAV) live in :mod:`usseg_models.io.video`, which re-exports every name of this module.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from usseg_models.io.format import file_error
from usseg_models.io.validate import MAX_DECODED_BYTES

__all__ = ["VIDEO_SUFFIXES", "MAX_VIDEO_FRAMES", "VideoInfo", "sniff_video", "probe_video", "max_video_frames"]

#: File name suffixes of the containers read here (content decides; suffixes only help MONAI pick a reader).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".qt", ".avi")

#: Default frame limit (``USSEG_MAX_VIDEO_FRAMES`` overrides it).
MAX_VIDEO_FRAMES = 3000

_ISO_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pnot", b"pdin", b"meta", b"moof",
            b"mfra", b"sidx", b"styp", b"prft", b"emsg", b"junk", b"PICT"}
_ISO_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf"}


def max_video_frames() -> int:
    """The frame limit in force: ``USSEG_MAX_VIDEO_FRAMES`` when set to a positive integer, else the default."""
    value = os.environ.get("USSEG_MAX_VIDEO_FRAMES", "")
    try:
        return int(value) if int(value) > 0 else MAX_VIDEO_FRAMES
    except ValueError:
        return MAX_VIDEO_FRAMES



@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about its first video track (read without decoding)."""

    container: str  # "mp4" (ISO base media, QuickTime included) or "avi"
    codec: str  # fourcc / sample entry, e.g. "avc1", "MJPG"
    width: int  # X (columns)
    height: int  # Y (rows)
    num_frames: int  # frames (samples) declared by the container
    frame_time_ms: float | None  # from the header (the decoder's timestamps are used after decoding)
    file_size: int


def sniff_video(head: bytes) -> str | None:
    """``"mp4"`` for ISO base media / QuickTime, ``"avi"`` for RIFF AVI, else ``None`` (first bytes of a file)."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if len(head) >= 8 and head[4:8] in _ISO_TOP and head[4:8] not in (b"meta", b"PICT"):
        size = int.from_bytes(head[:4], "big")
        if size in (0, 1) or size >= 8:
            return "mp4"
    return None


# ------------------------------------------------------------------------------------------------ ISO base media
def _iso_boxes(fh, start: int, end: int, path, where: str) -> Iterator[tuple[bytes, int, int, int]]:
    """Yield ``(type, offset, size, header_size)`` of the boxes in ``[start, end)``, checking every size."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        raw = fh.read(8)
        if len(raw) < 8:
            raise file_error(path, f"truncated video file: box header at byte {pos} is cut off")
        size, kind = struct.unpack(">I4s", raw)
        header = 8
        if size == 1:
            ext = fh.read(8)
            if len(ext) < 8:
                raise file_error(path, f"truncated video file: box {kind!r} at byte {pos} is cut off")
            size, header = struct.unpack(">Q", ext)[0], 16
        elif size == 0:
            size = end - pos
        if size < header:
            raise file_error(path, f"corrupt video file: box {kind!r} at byte {pos} has size {size}")
        if pos + size > end:
            what = "file" if where == "file" else f"box {where!r}"
            raise file_error(path, f"truncated video file: box {kind.decode('latin-1')!r} at byte {pos} declares "
                              f"{size} bytes but the {what} ends at byte {end}")
        yield kind, pos, size, header
        pos += size


def _read_at(fh, offset: int, n: int, path, what: str) -> bytes:
    fh.seek(offset)
    data = fh.read(n)
    if len(data) < n:
        raise file_error(path, f"truncated video file: {what} is cut off")
    return data


def _full_box(fh, pos: int, size: int, header: int, path, kind: str) -> bytes:
    if size - header > 64 * 2**20:
        raise file_error(path, f"corrupt video file: {kind} box of {size} bytes")
    return _read_at(fh, pos + header, size - header, path, f"{kind} box")


def _probe_iso(fh, path, file_size: int) -> VideoInfo:
    top = {}
    fragments = 0
    for kind, pos, size, header in _iso_boxes(fh, 0, file_size, path, "file"):
        top.setdefault(kind, (pos, size, header))
        fragments += kind == b"moof"
    if b"moov" not in top:
        raise file_error(path, "truncated or incomplete video file: no 'moov' index box (the recording was not "
                          "finished, or the file was cut short)")
    pos, size, header = top[b"moov"]
    tracks = [(p, s, h) for k, p, s, h in _iso_boxes(fh, pos + header, pos + size, path, "moov") if k == b"trak"]
    for tpos, tsize, theader in tracks:
        boxes = _collect(fh, tpos + theader, tpos + tsize, path, "trak")
        if b"hdlr" not in boxes:
            continue
        hdlr = _full_box(fh, *boxes[b"hdlr"], path, "hdlr")
        if hdlr[8:12] != b"vide":
            continue
        return _iso_video_track(fh, path, file_size, boxes, fragments)
    raise file_error(path, "video file has no video track")


def _collect(fh, start: int, end: int, path, where: str) -> dict[bytes, tuple[int, int, int]]:
    """First box of each type in the tree below ``[start, end)`` (containers of :data:`_ISO_CONTAINERS` opened)."""
    found: dict[bytes, tuple[int, int, int]] = {}
    for kind, pos, size, header in _iso_boxes(fh, start, end, path, where):
        found.setdefault(kind, (pos, size, header))
        if kind in _ISO_CONTAINERS:
            for k, v in _collect(fh, pos + header, pos + size, path, kind.decode("latin-1")).items():
                found.setdefault(k, v)
    return found


def _iso_video_track(fh, path, file_size: int, boxes: dict, fragments: int) -> VideoInfo:
    for needed in (b"stsd", b"stsz", b"mdhd"):
        if needed not in boxes:
            raise file_error(path, f"corrupt video file: the video track has no {needed.decode()!r} box")
    stsd = _full_box(fh, *boxes[b"stsd"], path, "stsd")
    if len(stsd) < 8 + 36 or struct.unpack(">I", stsd[4:8])[0] < 1:
        raise file_error(path, "corrupt video file: empty sample description (stsd)")
    codec = stsd[12:16].decode("latin-1")
    width, height = struct.unpack(">HH", stsd[8 + 32 : 8 + 36])
    mdhd = _full_box(fh, *boxes[b"mdhd"], path, "mdhd")
    if mdhd[0] == 1:
        timescale, duration = struct.unpack(">IQ", mdhd[20:32])
    else:
        timescale, duration = struct.unpack(">II", mdhd[12:20])
    stsz = _full_box(fh, *boxes[b"stsz"], path, "stsz")
    sample_size, count = struct.unpack(">II", stsz[4:12])
    if sample_size == 0 and len(stsz) < 12 + 4 * count:
        raise file_error(path, f"corrupt video file: sample size table lists {(len(stsz) - 12) // 4} of {count} frames")
    sizes = np.full(count, sample_size, np.int64) if sample_size else np.frombuffer(
        stsz[12 : 12 + 4 * count], ">u4").astype(np.int64)
    if count == 0 and fragments:
        count = _count_fragment_samples(fh, path, file_size)
    elif count:
        _check_sample_ranges(fh, path, file_size, boxes, sizes)
    if count == 0:
        raise file_error(path, "video file has zero frames")
    frame_ms = 1000.0 * duration / timescale / count if timescale and duration else None
    return VideoInfo("mp4", codec, int(width), int(height), int(count), frame_ms, file_size)


def _check_sample_ranges(fh, path, file_size: int, boxes: dict, sizes: np.ndarray) -> None:
    """Every frame's bytes (chunk offsets + sample-to-chunk map + sample sizes) must lie inside the file."""
    if b"stco" in boxes:
        stco = _full_box(fh, *boxes[b"stco"], path, "stco")
        n = struct.unpack(">I", stco[4:8])[0]
        offsets = np.frombuffer(stco[8 : 8 + 4 * n], ">u4").astype(np.int64)
    elif b"co64" in boxes:
        co64 = _full_box(fh, *boxes[b"co64"], path, "co64")
        n = struct.unpack(">I", co64[4:8])[0]
        offsets = np.frombuffer(co64[8 : 8 + 8 * n], ">u8").astype(np.int64)
    else:
        raise file_error(path, "corrupt video file: the video track has no chunk offsets (stco/co64)")
    if b"stsc" not in boxes or offsets.size == 0:
        raise file_error(path, "corrupt video file: the video track has no sample-to-chunk table (stsc)")
    stsc = _full_box(fh, *boxes[b"stsc"], path, "stsc")
    n = struct.unpack(">I", stsc[4:8])[0]
    entries = np.frombuffer(stsc[8 : 8 + 12 * n], ">u4").reshape(-1, 3).astype(np.int64)
    if entries.size == 0:
        raise file_error(path, "corrupt video file: empty sample-to-chunk table (stsc)")
    sample = 0
    for i, (first, per_chunk, _) in enumerate(entries):
        last = entries[i + 1][0] - 1 if i + 1 < len(entries) else offsets.size
        for chunk in range(int(first), int(last) + 1):
            if sample >= sizes.size:
                return
            if not 1 <= chunk <= offsets.size:
                raise file_error(
                    path, f"corrupt video file: sample-to-chunk table names chunk {chunk} of {offsets.size}")
            end = int(offsets[chunk - 1] + sizes[sample : sample + per_chunk].sum())
            if end > file_size:
                raise file_error(
                    path, f"truncated video file: frame {sample} onwards needs bytes up to {end}, the file "
                    f"has {file_size}")
            sample += int(per_chunk)
    if sample < sizes.size:
        raise file_error(path, f"corrupt video file: chunks hold {sample} of {sizes.size} frames")


def _count_fragment_samples(fh, path, file_size: int) -> int:
    count = 0
    for kind, pos, size, header in _iso_boxes(fh, 0, file_size, path, "file"):
        if kind != b"moof":
            continue
        for k, p, s, h in _iso_boxes(fh, pos + header, pos + size, path, "moof"):
            if k != b"traf":
                continue
            for k2, p2, _s2, h2 in _iso_boxes(fh, p + h, p + s, path, "traf"):
                if k2 == b"trun":
                    count += struct.unpack(">I", _read_at(fh, p2 + h2 + 4, 4, path, "trun box"))[0]
    return count


# ------------------------------------------------------------------------------------------------------- AVI
def _riff_chunks(fh, start: int, end: int, path, where: str) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(fourcc, data_offset, data_size)`` of the RIFF chunks in ``[start, end)`` (word-aligned)."""
    pos = start
    while pos + 8 <= end:
        raw = _read_at(fh, pos, 8, path, f"chunk header at byte {pos}")
        kind, size = struct.unpack("<4sI", raw)
        if pos + 8 + size > end:
            raise file_error(path, f"truncated video file: chunk {kind.decode('latin-1')!r} at byte {pos} declares "
                              f"{size} bytes but {where} ends at byte {end}")
        yield kind, pos + 8, size
        pos += 8 + size + (size & 1)


def _probe_avi(fh, path, file_size: int) -> VideoInfo:
    riff_size = struct.unpack("<I", _read_at(fh, 4, 4, path, "RIFF header"))[0]
    if 8 + riff_size > file_size:
        raise file_error(path, f"truncated video file: the RIFF header declares {8 + riff_size} bytes, the file has "
                          f"{file_size}")
    hdrl = movi = None
    for kind, off, size in _riff_chunks(fh, 12, 8 + riff_size, path, "the RIFF AVI chunk"):
        if kind == b"LIST":
            sub = _read_at(fh, off, 4, path, "LIST type")
            if sub == b"hdrl":
                hdrl = (off + 4, off + size)
            elif sub == b"movi":
                movi = (off + 4, off + size)
    if hdrl is None or movi is None:
        raise file_error(
            path, "corrupt AVI file: missing " + ("'hdrl' header list" if hdrl is None else "'movi' data list"))
    avih = None
    streams, dmlh_frames = [], None
    for kind, off, size in _riff_chunks(fh, *hdrl, path, "the 'hdrl' list"):
        if kind == b"avih" and size >= 40:
            avih = struct.unpack("<10I", _read_at(fh, off, 40, path, "avih header"))
        elif kind == b"LIST":
            sub = _read_at(fh, off, 4, path, "LIST type")
            if sub == b"strl":
                strh = strf = None
                for k, o, s in _riff_chunks(fh, off + 4, off + size, path, "a 'strl' list"):
                    if k == b"strh" and s >= 48:
                        strh = _read_at(fh, o, 48, path, "strh header")
                    elif k == b"strf" and s >= 40:
                        strf = _read_at(fh, o, 40, path, "strf header")
                streams.append((strh, strf))
            elif sub == b"odml":
                for k, o, s in _riff_chunks(fh, off + 4, off + size, path, "the 'odml' list"):
                    if k == b"dmlh" and s >= 4:
                        dmlh_frames = struct.unpack("<I", _read_at(fh, o, 4, path, "dmlh"))[0]
    if avih is None:
        raise file_error(path, "corrupt AVI file: no main header (avih)")
    video = next(((h, f) for h, f in streams if h is not None and h[:4] == b"vids"), None)
    if video is None:
        raise file_error(path, "AVI file has no video stream")
    strh, strf = video
    handler = strh[4:8]
    scale, rate, _start, length = struct.unpack("<IIII", strh[20:36])
    width, height, codec = avih[8], avih[9], handler
    if strf is not None:
        w, h = struct.unpack("<ii", strf[4:12])
        width, height, codec = abs(w), abs(h), strf[16:20]
    frames = int(dmlh_frames or length or avih[4])
    if frames <= 0:
        raise file_error(path, "AVI file has zero frames")
    frame_ms = 1000.0 * scale / rate if scale and rate else (avih[0] / 1000.0 if avih[0] else None)
    codec_name = codec.decode("latin-1") if codec.strip(b"\x00") else "raw"
    return VideoInfo("avi", codec_name, int(width), int(height), frames, frame_ms, file_size)


# --------------------------------------------------------------------------------------------------- public API
def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Validate a video file's container in pure Python and return its header information (nothing decoded).

    Raises:
        FileNotFoundError: no such file.
        UltrasoundIOError: not an MP4/MOV/AVI file, truncated, corrupt structure, no video track, zero frames, or
            more frames/decoded bytes than the limits (see the module docstring).
    """
    p = Path(path)
    if not p.is_file():
        if not p.exists():
            raise FileNotFoundError(2, "No such file", os.fspath(path))
        raise file_error(path, "is not a file")
    file_size = p.stat().st_size
    with open(p, "rb") as fh:
        kind = sniff_video(fh.read(16))
        if kind is None:
            raise file_error(path, "not an MP4/MOV or AVI video file")
        try:
            info = _probe_iso(fh, path, file_size) if kind == "mp4" else _probe_avi(fh, path, file_size)
        except struct.error as exc:
            raise file_error(path, f"corrupt video header ({exc})") from exc
    if info.width < 1 or info.height < 1:
        raise file_error(path, f"video frame size is {info.width}x{info.height}")
    limit = max_video_frames()
    if info.num_frames > limit:
        raise file_error(path, f"video has {info.num_frames} frames, more than the limit of {limit} "
                          "(set USSEG_MAX_VIDEO_FRAMES to raise it, or trim the clip)")
    decoded = info.width * info.height * 3 * info.num_frames
    if decoded > MAX_DECODED_BYTES:
        raise file_error(
            path, f"video of {info.width}x{info.height}x{info.num_frames} frames would decode to {decoded} "
            f"bytes, more than the {MAX_DECODED_BYTES}-byte limit")
    return info
