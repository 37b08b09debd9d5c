"""USSegClipLib against a REAL MONAI Label server running the usseg app: the complete flow the Slicer widget
drives, with geometry asserted at each step.

connect → list models and labels → next clip (active learning) → infer the whole clip (by datastore id, and as
Slicer sends it: uploaded NIfTI with an oblique IJK→RAS, whole and in chunks with progress) → intrasense on one
frame → edit the label (change some frames) → submit → read the stored label back → train and see it finish with
new weights live → infer again with the new weights. Also the error paths a user sees (unknown model/strategy,
a file that is not an image).

The studies are small synthetic cines written by ``usseg_models.data.sample_set`` (64 × 64 px, 6 frames) into a
temporary folder; the server runs the ``small`` configuration on CPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from slicer_server_support import pydicom, server_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"))

from USSegClipLib import (  # noqa: E402
    Clip,
    MonaiLabelClient,
    ServerResponseError,
    TrainingMonitor,
    compose_matrix,
    infer_clip,
    infer_frame,
    model_labels,
    read_seg_nrrd,
    read_volume,
    write_nifti,
    write_seg_nrrd,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

sample_set = pytest.importorskip("usseg_models.data.sample_set")

CONF = {"models": "dsanet,intrasense", "config": "small", "auto_retrain_after": "0", "max_epochs": "1"}
FRAMES, SIZE = 6, 64
OBLIQUE = compose_matrix([0.21, 0.34, 1.5], [12.5, -40.0, 7.25],
                         np.array([[0.0, -1.0, 0.0], [0.6, 0.0, -0.8], [0.8, 0.0, 0.6]]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("usseg_slicer_flow")
    studies = root / "studies"
    sample_set.generate_sample_set(studies, frames=FRAMES, cines=3, images=0, dicom_images=0, size=SIZE, unlabeled=2)
    app = server_utils.copy_app(root / "app")
    srv = server_utils.MonaiLabelServer(app, studies, conf=CONF)
    srv.start(timeout=300)
    try:
        yield srv.url, studies
    finally:
        srv.stop()


def dicom_clip_geometry(path: Path) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    """(X, Y, T) shape, the affine DESIGN.md prescribes for a DICOM cine, and the pixels as (X, Y, T)."""
    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array  # (T, rows, cols)
    region = ds.SequenceOfUltrasoundRegions[0]
    sx, sy = float(region.PhysicalDeltaX) * 10, float(region.PhysicalDeltaY) * 10  # cm → mm
    shape = (int(ds.Columns), int(ds.Rows), int(ds.NumberOfFrames))
    return shape, np.diag([sx, sy, 1.0, 1.0]), pixels.transpose(2, 1, 0)


def subdir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path


def test_error_paths_show_the_server_message(server, tmp_path):
    url, _ = server
    client = MonaiLabelClient(url, retries=0)
    with pytest.raises(ServerResponseError, match="nope") as err:
        client.infer("nope", image_id="cine_001")
    assert err.value.is_client_error
    with pytest.raises(ServerResponseError, match="strategy") as err:
        client.next_sample("no_such_strategy")
    assert err.value.is_client_error
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"this is not a NIfTI file")
    with pytest.raises(ServerResponseError) as err:
        client.infer("dsanet", file=junk)
    assert err.value.is_client_error and err.value.message, err.value
    with pytest.raises(ServerResponseError, match="image") as err:
        client.infer("dsanet", image_id="not_in_datastore")
    assert err.value.is_client_error


def test_complete_flow(server, tmp_path):
    url, studies = server
    client = MonaiLabelClient(url, timeout=60, infer_timeout=600)

    # -- connect: models, their kinds and labels, strategies, datastore
    info = client.info()
    assert info["models"]["dsanet"]["dimension"] == 3 and info["models"]["intrasense"]["dimension"] == 2
    labels = model_labels(info, "dsanet")
    assert labels == {"lesion": 1}
    assert set(model_labels(info, "intrasense")) and "first" in info["strategies"]
    objects = client.datastore("all")["objects"]
    assert {"cine_000", "cine_001", "cine_002"} <= set(objects)
    assert "final" in objects["cine_000"]["labels"] and not objects["cine_001"]["labels"]

    # -- next clip to label: the first unlabelled one; download it as Slicer does
    sample = client.next_sample("first")
    image_id = sample["id"]
    assert image_id in {"cine_001", "cine_002"}
    downloaded = Path(client.download_image(image_id, tmp_path))
    assert downloaded.read_bytes() == (studies / f"{image_id}.dcm").read_bytes()
    shape, dicom_affine, pixels = dicom_clip_geometry(downloaded)
    assert shape == (SIZE, SIZE, FRAMES)

    # -- infer the whole clip by datastore id: label on the DICOM's grid with its calibrated spacing
    first = client.infer("dsanet", image_id=image_id)
    assert first.params["label_names"] == labels
    server_label = read_volume(first.save_label(subdir(tmp_path, "by_id")))
    assert server_label.voxels.shape == shape
    np.testing.assert_allclose(server_label.ijk_to_ras, dicom_affine, atol=1e-5)
    assert set(np.unique(server_label.voxels)) <= {0, 1}

    # -- the same clip as Slicer holds it (oblique IJK→RAS), uploaded as NIfTI: whole and in chunks
    clip = Clip(pixels, OBLIQUE, 2)
    upload = write_nifti(clip, tmp_path / "slicer_clip.nii.gz")
    raw = client.infer("dsanet", file=upload)
    raw_label = read_volume(raw.save_label(tmp_path))
    np.testing.assert_allclose(raw_label.ijk_to_ras, OBLIQUE, atol=1e-5)  # server kept the upload's geometry
    np.testing.assert_array_equal(raw_label.voxels, server_label.voxels)  # same pixels → same masks, no axis swap
    steps = []
    chunked = infer_clip(client, "dsanet", clip, chunk_frames=2, progress=lambda d, n: steps.append((d, n)))
    assert steps == [(0, 6), (2, 6), (4, 6), (6, 6)]
    np.testing.assert_array_equal(chunked.ijk_to_ras, OBLIQUE)
    np.testing.assert_array_equal(chunked.voxels, server_label.voxels)  # chunked == whole clip
    frames_first = Clip(np.moveaxis(pixels, 2, 0), OBLIQUE[:, [2, 0, 1, 3]], 0)  # frame axis not last
    moved = infer_clip(client, "dsanet", frames_first)
    np.testing.assert_array_equal(np.moveaxis(moved.voxels, 0, 2), server_label.voxels)

    # -- "Send clip to server": a clip with no DICOM behind it goes to the datastore as NIfTI, then infer by id
    new_id = client.upload_image(upload)
    assert new_id == "slicer_clip" and new_id in client.datastore("all")["objects"]
    by_new_id = read_volume(client.infer("dsanet", image_id=new_id).save_label(subdir(tmp_path, "uploaded")))
    np.testing.assert_allclose(by_new_id.ijk_to_ras, OBLIQUE, atol=1e-5)
    np.testing.assert_array_equal(by_new_id.voxels, server_label.voxels)

    # -- intrasense on one frame (as a one-slice NIfTI): label placed at that frame
    one = infer_frame(client, "intrasense", clip, 3)
    assert one.voxels.shape == (SIZE, SIZE, 1)
    np.testing.assert_allclose(one.frame_center(0), clip.frame_center(3), atol=1e-9)

    # -- edit some frames, keep the server's geometry, submit
    edited = server_label.voxels.copy()
    edited[:, :, 0] = 0
    edited[20:40, 18:30, 2] = 1
    edited[:, :, 4] = edited[:, :, 3]
    assert not np.array_equal(edited, server_label.voxels)
    edited_clip = Clip(edited, server_label.ijk_to_ras, 2)
    local = write_seg_nrrd(tmp_path / f"{image_id}.seg.nrrd", edited_clip, labels)  # the module's local copy
    seg_geometry, masks = read_seg_nrrd(local)
    np.testing.assert_array_equal(masks["lesion"], edited == 1)
    np.testing.assert_allclose(seg_geometry.ijk_to_ras, server_label.ijk_to_ras, atol=1e-12)
    submitted = write_nifti(edited_clip, tmp_path / f"{image_id}.nii.gz")
    saved = client.save_label(image_id, submitted, params={"label_names": labels})
    assert saved["image"] == image_id
    stored = read_volume(client.download_label(saved["label"], "final", subdir(tmp_path, "stored")))
    np.testing.assert_array_equal(stored.voxels, edited)
    np.testing.assert_allclose(stored.ijk_to_ras, dicom_affine, atol=1e-5)
    assert "final" in client.datastore("all")["objects"][image_id]["labels"]

    # -- train; see it finish and the new weights go live
    monitor = TrainingMonitor(client, "dsanet")
    started = monitor.start({"max_epochs": 1})
    assert started.status in {"SUBMITTED", "RUNNING", "DONE"}
    t0 = time.monotonic()
    done = monitor.wait(timeout=900, interval=1.0)
    train_s = time.monotonic() - t0
    assert done.status == "DONE", "\n".join(done.details)
    assert done.new_model_live, f"weights unchanged after training (checksum {done.checksum})"
    assert client.model_info("dsanet")["checksum"] == done.checksum
    print(f"training finished in {train_s:.1f} s")

    # -- infer again: the new weights answer, same geometry
    again = client.infer("dsanet", image_id=image_id)
    assert again.params["model"] != first.params["model"], (again.params["model"], first.params["model"])
    again_label = read_volume(again.save_label(tmp_path))
    assert again_label.voxels.shape == shape
    np.testing.assert_allclose(again_label.ijk_to_ras, dicom_affine, atol=1e-5)


def test_stop_training(server):
    """``DELETE /train/`` through the client: a running training task ends as STOPPED."""
    url, _ = server
    client = MonaiLabelClient(url, timeout=60)
    monitor = TrainingMonitor(client, "dsanet")
    state = monitor.start({"max_epochs": 50})
    deadline = time.monotonic() + 120
    while state.status != "RUNNING":  # the task's process exists only once it runs
        assert not state.finished, f"training ended before it could be stopped: {state.status}"
        assert time.monotonic() < deadline, f"training never started running: {state.status}"
        time.sleep(0.2)
        state = monitor.poll()
    stopped = client.stop_training()
    assert stopped and stopped["status"] == "STOPPED", stopped
    final = monitor.poll()
    assert final.status == "STOPPED" and final.task_id == monitor.task_id
    assert not final.new_model_live


@pytest.mark.parametrize(
    "name,spacing_mm",
    [
        ("examples_ybr_color.dcm", 0.5104970559477806),  # SonoSite, YBR_FULL_422 JPEG; region calibration in cm
        ("US-PAL-8-10x-echo.dcm", 1.0),  # PALETTE COLOR RLE; no calibration, no PixelSpacing
    ],
)
def test_real_dicom_cine_sent_from_slicer(server, us_dicom_dir, tmp_path, name, spacing_mm):
    """A real ultrasound DICOM cine, as the module sends one loaded through Slicer's DICOM module: uploaded to the
    datastore, segmented by id; the label has the cine's (X, Y, T) grid and its calibrated spacing."""
    url, _ = server
    source = us_dicom_dir / name
    if not source.is_file():
        pytest.skip(f"{source} not found")
    ds = pydicom.dcmread(str(source), stop_before_pixels=True)
    client = MonaiLabelClient(url, infer_timeout=600)
    image_id = client.upload_image(source)
    assert image_id in client.datastore("all")["objects"]
    result = client.infer("dsanet", image_id=image_id)
    assert result.params.get("num_frames") == int(ds.NumberOfFrames)
    label = read_volume(result.save_label(tmp_path))
    assert label.voxels.shape == (int(ds.Columns), int(ds.Rows), int(ds.NumberOfFrames))
    np.testing.assert_allclose(label.ijk_to_ras, np.diag([spacing_mm, spacing_mm, 1.0, 1.0]), atol=1e-6)
    assert set(np.unique(label.voxels)) <= {0, 1}
