"""Video files (MP4/MOV/AVI) as cines: the real lung clips, written clips, truncated/corrupt files, limits, readers."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest

from usseg_models.errors import UltrasoundIOError
from usseg_models.io import LoadUltrasound, load_image, probe_video, read_video, sniff_format, write_video

pytestmark = pytest.mark.filterwarnings("ignore:.*carries no calibration:UserWarning")


def _manifest(folder):
    lines = (folder / "MANIFEST.txt").read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:] if line.strip()]


@pytest.fixture(scope="module")
def mp4_dir(shared_data):
    folder = shared_data / "us_mp4"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


def _moving_clip(t=12, rows=40, cols=52, colour=False):
    frames = np.zeros((t, rows, cols, 3), np.uint8) + 30
    for i in range(t):
        frames[i, 8 + i : 20 + i, 10:30] = 200
        if colour:
            frames[i, 2:6, 2:12] = (220, 30, 30)
    return frames


def test_real_mp4_frames_size_and_time_as_manifest(mp4_dir):
    entries = _manifest(mp4_dir)
    assert entries
    for entry in entries:
        path = mp4_dir / entry["file"]
        info = probe_video(path)
        assert (info.width, info.height, info.num_frames) == (int(entry["width"]), int(entry["height"]),
                                                              int(entry["frames"]))
        assert sniff_format(path) == "video"
        with pytest.warns(UserWarning, match="no calibration"):
            arr, meta = load_image(path)
        x, y, t = int(entry["width"]), int(entry["height"]), int(entry["frames"])
        assert arr.shape == (x, y, t) and arr.dtype == np.uint8  # grey H.264 clip: (X, Y, T)
        assert meta["num_frames"] == t and meta["original_channel_dim"] == "no_channel"
        assert meta["frame_time_ms"] == pytest.approx(1000.0 / float(entry["fps"]))
        assert meta["fps"] == pytest.approx(float(entry["fps"]))
        np.testing.assert_array_equal(meta["spacing"], [1.0, 1.0, 1.0])
        np.testing.assert_array_equal(meta["affine"], np.eye(4))
        assert meta["spacing_source"] == "default" and meta["format"] == "video" and meta["codec"] == "avc1"
        assert (meta["columns"], meta["rows"]) == (x, y)
        assert 10 < arr.mean() < 200 and arr.std() > 5  # real image content, not a blank decode


def test_real_mp4_through_monai_readers(mp4_dir):
    from monai.transforms import LoadImage

    from usseg_models.io import UltrasoundImageReader, UltrasoundVideoReader

    path = mp4_dir / "patient_10_R2.mp4"
    img = LoadImage(reader=UltrasoundVideoReader(), image_only=True)(path)
    assert tuple(img.shape) == (350, 350, 100)
    assert UltrasoundVideoReader().verify_suffix(str(path)) and UltrasoundImageReader().verify_suffix(str(path))
    assert not UltrasoundVideoReader().verify_suffix("x.dcm")
    t = LoadUltrasound(ensure_channel_first=True)(path)
    assert tuple(t.shape) == (1, 350, 350, 100) and t.meta["num_frames"] == 100


def test_truncated_mp4_is_refused_before_decoding(mp4_dir, tmp_path, monkeypatch):
    import av

    raw = (mp4_dir / "patient_10_L1.mp4").read_bytes()
    opened = []
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a) or pytest.fail("decoder reached"))
    for fraction in (0.1, 0.5, 0.99):
        bad = tmp_path / f"cut_{fraction}.mp4"
        bad.write_bytes(raw[: int(len(raw) * fraction)])
        with pytest.raises(UltrasoundIOError, match="truncated"):
            load_image(bad)
    assert not opened


def test_written_mp4_avi_gif_round_trip_and_truncation(tmp_path):
    frames = _moving_clip()
    mp4 = write_video(tmp_path / "clip.mp4", frames, fps=20)
    avi = write_video(tmp_path / "clip.avi", frames, fps=20)  # MJPEG
    for path, codec in ((mp4, "avc1"), (avi, "MJPG")):
        arr, meta = read_video(path)
        assert arr.shape == (52, 40, 12), path  # (X, Y, T): X = columns
        assert meta["codec"] == codec and meta["container"] == ("avi" if path.suffix == ".avi" else "mp4")
        assert meta["frame_time_ms"] == pytest.approx(50.0)
        truth = frames[..., 0].transpose(2, 1, 0)
        assert np.abs(arr.astype(int) - truth).mean() < 4  # lossy codecs, same picture
        raw = path.read_bytes()
        for fraction in (0.3, 0.9):
            cut = tmp_path / f"cut_{fraction}{path.suffix}"
            cut.write_bytes(raw[: int(len(raw) * fraction)])
            with pytest.raises(UltrasoundIOError, match="truncated|incomplete"):
                load_image(cut)
    gif = write_video(tmp_path / "clip.gif", frames, fps=20)
    assert load_image(gif)[0].shape[:2] == (52, 40)  # GIF: first frame, read by Pillow


def test_faststart_mp4_cut_in_frame_data(tmp_path):
    """Index first (``movflags=faststart``): the sample tables say where every frame's bytes lie."""
    import av

    path = tmp_path / "fast.mp4"
    frames = _moving_clip(t=20, rows=64, cols=64)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    raw = path.read_bytes()
    assert raw.find(b"moov") < raw.find(b"mdat")
    assert read_video(path)[0].shape == (64, 64, 20)
    cut = tmp_path / "fast_cut.mp4"
    cut.write_bytes(raw[: len(raw) - 200])
    with pytest.raises(UltrasoundIOError, match="truncated"):
        probe_video(cut)


def test_colour_clip_and_grayscale_luma(tmp_path):
    path = write_video(tmp_path / "colour.mp4", _moving_clip(colour=True))
    arr, meta = load_image(path)
    assert arr.shape == (52, 40, 12, 3) and meta["original_channel_dim"] == -1
    assert meta["photometric_interpretation"] == "RGB"
    red = arr[2:12, 2:6, 0].astype(int)
    assert red[..., 0].mean() > 150 and red[..., 1].mean() < 100
    grey, gmeta = load_image(path, grayscale=True)
    assert grey.shape == (52, 40, 12) and gmeta["original_channel_dim"] == "no_channel"
    f = arr.astype(np.float64)
    np.testing.assert_array_equal(grey, np.rint(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]))


def test_not_a_video_and_corrupt_data_raise_ultrasound_io_error(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_bytes(b"this is a text file, not a video\n" * 20)
    with pytest.raises(UltrasoundIOError, match="unsupported or unrecognised"):
        load_image(text)
    fake = tmp_path / "fake.mp4"  # an ftyp box and nothing else
    fake.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
    with pytest.raises(UltrasoundIOError, match="moov"):
        load_image(fake)
    riff = tmp_path / "fake.avi"
    riff.write_bytes(b"RIFF\x04\x00\x00\x00AVI ")
    with pytest.raises(UltrasoundIOError):
        load_image(riff)
    # garbage inside the compressed frames: either a clip comes back or UltrasoundIOError, never anything else
    path = write_video(tmp_path / "ok.mp4", _moving_clip(t=10))
    raw = bytearray(path.read_bytes())
    start = raw.find(b"mdat") + 40
    rng = np.random.default_rng(0)
    raw[start : start + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    bad = tmp_path / "garbled.mp4"
    bad.write_bytes(bytes(raw))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr, _ = load_image(bad)
    except UltrasoundIOError:
        pass
    else:
        assert arr.shape[:2] == (52, 40)


def test_frame_limit(mp4_dir, monkeypatch):
    monkeypatch.setenv("USSEG_MAX_VIDEO_FRAMES", "50")
    with pytest.raises(UltrasoundIOError, match="more than the limit of 50"):
        probe_video(mp4_dir / "patient_10_L1.mp4")
    monkeypatch.setenv("USSEG_MAX_VIDEO_FRAMES", "100")
    assert probe_video(mp4_dir / "patient_10_L1.mp4").num_frames == 100
