"""``usseg predict``: a mixed folder (DICOM, NIfTI, video, frame folder, a truncated video) gives one output per good
input in the input's geometry, overlay videos with the clip's frame count, and a non-zero exit for the bad one."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from usseg_models.cli.main import main
from usseg_models.data.dicom_writer import synthetic_identity, write_us_cine, write_us_image
from usseg_models.errors import CheckpointError
from usseg_models.inference.image import ImagePredictor
from usseg_models.inference.video import DSANetPredictor
from usseg_models.io import load_image, read_video, write_video
from usseg_models.networks import build_network
from usseg_models.networks.checkpoint import save_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:.*carries no calibration:UserWarning")


def _frames(t, rows=40, cols=52):
    out = np.full((t, rows, cols), 50, np.uint8)
    for i in range(t):
        out[i, 10 + i % 6 : 24 + i % 6, 12:30] = 200
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    dsanet = save_checkpoint(folder / "dsanet.pt", build_network("dsanet", "small"), "dsanet", "small")
    unet = save_checkpoint(folder / "unet.pt", build_network("unet", "small"), "unet", "small")
    return dsanet, unet


@pytest.fixture
def mixed_folder(tmp_path):
    src = tmp_path / "inputs"
    write_video(src / "lung.mp4", _frames(12), fps=20)
    write_us_cine(src / "echo" / "cine.dcm", _frames(7), pixel_mm=0.25, frame_time_ms=40.0,
                  identity=synthetic_identity(0, "cine"))
    affine = np.array([[0.4, 0, 0, 3.0], [0, 0.5, 0, -2.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(_frames(5).transpose(2, 1, 0).copy(), affine), str(src / "vol.nii.gz"))
    (src / "frames" / "0002").mkdir(parents=True)
    for t, f in enumerate(_frames(6)):
        Image.fromarray(f).save(src / "frames" / "0002" / f"{t + 1:04d}.jpg")
    good = (src / "lung.mp4").read_bytes()
    (src / "broken.mp4").write_bytes(good[: len(good) // 2])  # truncated
    (src / "notes.txt").write_text("not an image")
    return src, affine


def test_predict_dsanet_mixed_folder(checkpoints, mixed_folder, tmp_path, capsys):
    src, affine = mixed_folder
    out = tmp_path / "out"
    code = main(["predict", "dsanet", "--checkpoint", str(checkpoints[0]), "--input", str(src), "--output", str(out),
                 "--overlay", "--device", "cpu", "--no-progress"])
    assert code == 1  # one bad input
    err = capsys.readouterr().err
    assert "FAILED" in err and "broken.mp4" in err and "truncated" in err
    lab, meta = load_image(out / "lung.nii.gz")
    assert lab.shape == (52, 40, 12) and set(np.unique(lab)) <= {0, 1}
    lab, meta = load_image(out / "echo" / "cine.nii.gz")
    assert lab.shape == (52, 40, 7)
    np.testing.assert_allclose(np.diag(meta["affine"])[:2], [0.25, 0.25])  # the DICOM calibration kept
    lab, meta = load_image(out / "vol.nii.gz")
    assert lab.shape == (52, 40, 5) and np.allclose(meta["affine"], affine)
    lab, _ = load_image(out / "frames" / "0002.nii.gz")  # a folder of frames is one clip
    assert lab.shape == (52, 40, 6)
    for name, n in (("lung", 12), ("echo/cine", 7), ("vol", 5), ("frames/0002", 6)):
        video, vmeta = read_video(out / f"{name}_overlay.mp4")
        assert vmeta["num_frames"] == n and video.shape[1] >= 256  # enlarged for viewing
    assert read_video(out / "lung_overlay.mp4")[1]["frame_time_ms"] == pytest.approx(50.0)
    assert not (out / "broken.nii.gz").exists() and not (out / "notes.nii.gz").exists()
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 5 and [r["status"] for r in rows].count("failed") == 1


def test_predict_formats_single_file_and_gif_overlay(checkpoints, mixed_folder, tmp_path):
    src, _ = mixed_folder
    out = tmp_path / "seg"
    assert main(["predict", "dsanet", "--checkpoint", str(checkpoints[0]), "--input", str(src / "lung.mp4"),
                 "--output", str(out), "--format", "seg.nrrd", "--overlay", "gif", "--no-progress"]) == 0
    assert load_image(out / "lung.seg.nrrd")[0].shape == (52, 40, 12)
    with Image.open(out / "lung_overlay.gif") as gif:
        assert gif.n_frames == 12
    png = tmp_path / "png"
    assert main(["predict", "dsanet", "--checkpoint", str(checkpoints[0]), "--input", str(src / "frames"),
                 "--output", str(png), "--format", "png", "--no-progress"]) == 0
    names = sorted(p.name for p in (png / "0002").iterdir())
    assert names == [f"{t:04d}.png" for t in range(1, 7)]  # one mask per frame, named like the frames
    mask = np.asarray(Image.open(png / "0002" / "0001.png"))
    assert mask.shape == (40, 52) and set(np.unique(mask)) <= {0, 255}


def test_predict_intrasense_images_and_cine_frame_by_frame(checkpoints, tmp_path, capsys):
    src = tmp_path / "images"
    src.mkdir()
    Image.fromarray(_frames(1)[0]).save(src / "a.png")
    Image.fromarray(np.repeat(_frames(1)[0][..., None], 3, -1)).save(src / "b.jpg")
    write_us_image(src / "c.dcm", _frames(1)[0], pixel_mm=0.3, identity=synthetic_identity(0, "img"))
    write_video(src / "clip.mp4", _frames(4))
    out = tmp_path / "out"
    assert main(["predict", "intrasense", "--checkpoint", str(checkpoints[1]), "--input", str(src),
                 "--output", str(out), "--overlay", "--no-progress"]) == 0
    assert load_image(out / "a.nii.gz")[0].shape == (52, 40)
    assert load_image(out / "b.nii.gz")[0].shape == (52, 40)
    np.testing.assert_allclose(np.diag(load_image(out / "c.nii.gz")[1]["affine"])[:2], [0.3, 0.3])
    assert load_image(out / "clip.nii.gz")[0].shape == (52, 40, 4)
    assert (out / "a_overlay.png").is_file() and read_video(out / "clip_overlay.mp4")[1]["num_frames"] == 4
    assert "4 of 4 inputs segmented" in capsys.readouterr().out


def test_predict_refuses_wrong_checkpoint_and_image_for_dsanet(checkpoints, tmp_path, capsys):
    img = tmp_path / "one.png"
    Image.fromarray(_frames(1)[0]).save(img)
    assert main(["predict", "dsanet", "--checkpoint", str(checkpoints[1]), "--input", str(img),
                 "--output", str(tmp_path / "o")]) == 2
    assert "needs a dsanet checkpoint" in capsys.readouterr().err
    assert main(["predict", "dsanet", "--checkpoint", str(checkpoints[0]), "--input", str(img),
                 "--output", str(tmp_path / "o"), "--no-progress"]) == 1
    assert "use 'usseg predict intrasense' for images" in capsys.readouterr().err
    with pytest.raises(CheckpointError):
        ImagePredictor.from_checkpoint(checkpoints[0])
    assert DSANetPredictor.from_checkpoint(checkpoints[0]).spatial_size == 64
