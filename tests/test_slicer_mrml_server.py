"""USSegClipLogic on real MRML (slicer-core) against a real ``monailabel start_server`` running the usseg app.

Clips: a real multi-frame ultrasound DICOM (``../shared/data/us_dicom/examples_ybr_color.dcm``: 30 colour frames,
320 × 240, YBR JPEG) and a synthetic cine (``sample-data/studies/cine_000.dcm``: 24 frames, 128 × 128), each
loaded two ways, as 3D Slicer loads cines:

- as one volume with the frames along k (Slicer's own file reader), and
- as a sequence of 2-D frames with a sequence browser (how the DICOM module's image-sequence loader leaves a cine),

with a non-trivial IJK→RAS: the spacing of the file's ultrasound region, rotated 30° and flipped.

Checked: frame t of the segmentation Slicer shows covers frame t of the image in RAS (the drawn voxels, mapped
through the image's own RAS→IJK, are exactly the server's label of frame t); edits painted into frames as the
Segment Editor paints reach the server's stored label, with ``reviewed_frames``; refinement from edited frames end
to end (skipped while the server lacks ``/infer/dsanet_refine``), the propagated label shown first and then
the refined one, frames drawn meanwhile kept; a ``.seg.nrrd`` written by the server loads
through Slicer's segmentation storage node with the server's names, colours and extent; an untrained model's 409
reads as a plain sentence; the module's in-Slicer server check passes.

The server serves DSANet ``small`` with a checkpoint trained here for a few seconds (an untrained network marks
every pixel, which would make the geometry checks vacuous; the tests assert the masks vary within and across
frames before using them).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from mrml_support import require_slicer_core
from slicer_server_support import pydicom, server_utils

slicer = require_slicer_core()

from USSegClipLib import (  # noqa: E402
    Clip,
    ModelNotTrainedError,
    MonaiLabelClient,
    USSegClipError,
    read_volume,
    refine_clip,
    to_grey,
    write_nifti,
)
from USSegClipLogic import (  # noqa: E402
    IMAGE_ID_ATTRIBUTE,
    USSegClipLogic,
    add_sequence_clip,
    selftest,
    set_ijk_to_ras,
)
from USSegClipLogic.roundtrips import server_geometry  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "sample-data" / "studies" / "cine_000.dcm"
SYNTHETIC_TRUTH = REPO / "sample-data" / "studies" / "labels" / "final" / "cine_000.nii.gz"
REAL_NAME = "examples_ybr_color.dcm"
MODEL = "dsanet"


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """DSANet ``small`` trained for 3 epochs on 6 tiny synthetic cines (~10 s on 2 cores): masks that vary."""
    from usseg_models.data.sample_set import generate_sample_set
    from usseg_models.training import train_dsanet

    tmp = tmp_path_factory.mktemp("mrml_checkpoint")
    generate_sample_set(tmp / "data", seed=0, frames=6, cines=6, images=0, dicom_images=0, size=64, unlabeled=0)
    result = train_dsanet(tmp / "data", tmp / "dsanet", config="small", epochs=3, batch_size=2, lr=1e-3,
                          warmup_epochs=0.25, val_fraction=0.0, device="cpu", seed=0, progress=False)
    return Path(result["last_checkpoint"])


@pytest.fixture(scope="module")
def server(tmp_path_factory, checkpoint):
    """One server for the module: dsanet (with the checkpoint) and intrasense (untrained); no labels stored."""
    if not SYNTHETIC.is_file():
        pytest.skip(f"{SYNTHETIC} is missing (run `usseg sample-data`)")
    root = tmp_path_factory.mktemp("mrml_server")
    studies = root / "studies"
    studies.mkdir()
    shutil.copy(SYNTHETIC, studies / SYNTHETIC.name)
    conf = {"models": "dsanet,intrasense", "config": "small", "auto_retrain_after": "0",
            "dsanet_pretrained_path": str(checkpoint), "untrained_infer": "refuse",  # 409 as a user meets it
            "refine_time_budget_s": "60"}  # refinements bounded by steps: two requests give the same answer
    with server_utils.running_server(server_utils.copy_app(root / "app"), studies, conf=conf,
                                     env={"OMP_NUM_THREADS": "1"}) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return MonaiLabelClient(server, timeout=60, infer_timeout=600)


@pytest.fixture
def logic(scene, client):
    return USSegClipLogic(scene[0], client=client, sequencesLogic=scene[1])


def source_file(source: str, us_dicom_dir: Path) -> Path:
    path = SYNTHETIC if source == "synthetic" else us_dicom_dir / REAL_NAME
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def region_spacing_mm(path: Path) -> float:
    """Pixel spacing of the file's first ultrasound region (cm in DICOM) in mm."""
    region = pydicom.dcmread(str(path), stop_before_pixels=True).SequenceOfUltrasoundRegions[0]
    assert abs(float(region.PhysicalDeltaX) - float(region.PhysicalDeltaY)) < 1e-9
    return float(region.PhysicalDeltaX) * 10.0


class LoadedClip:
    """A cine as Slicer holds it: ``node`` (a volume, or a sequence's proxy) and the pixels (T, j, i[, 3])."""

    def __init__(self, logic, scene, path: Path, loading: str, name: str):
        self.path, self.loading = path, loading
        self.matrix = selftest.oblique_matrix([region_spacing_mm(path)] * 2 + [1.0], origin=(-20.0, 35.0, 12.5))
        volume = logic.loadVolumeFile(str(path), name)  # Slicer's reader: frames along k
        self.pixels = slicer.util.arrayFromVolume(volume).copy()
        self.browser = None
        if loading == "volume":
            set_ijk_to_ras(volume, self.matrix)  # calibrated, rotated and flipped
            self.node = volume
        else:
            scene[0].RemoveNode(volume)
            self.browser, self.node = add_sequence_clip(scene[0], scene[1], self.pixels, self.matrix, name=name)
        self.frames = self.pixels.shape[0]
        self.shape = (self.pixels.shape[2], self.pixels.shape[1], self.frames)  # (i, j, t)


def load(logic, scene, source, loading, us_dicom_dir) -> LoadedClip:
    return LoadedClip(logic, scene, source_file(source, us_dicom_dir), loading, f"{source}_{loading}")


def server_label(client, clip: LoadedClip, tmp_path: Path) -> tuple[np.ndarray, dict]:
    """The server's label of the clip, asked independently of the Logic: the DICOM file itself for a volume
    (the Logic sends that file), the grey frames as NIfTI for a sequence (what the Logic sends)."""
    out = tmp_path / f"expected_{clip.loading}"
    out.mkdir()
    if clip.loading == "volume":
        result = client.infer(MODEL, file=clip.path)
    else:
        grey = to_grey(clip.pixels).transpose(2, 1, 0)  # (T, j, i) → (i, j, T)
        result = client.infer(MODEL, file=write_nifti(Clip(grey, np.eye(4), 2), out / "frames.nii.gz"))
    return read_volume(result.save_label(out)).voxels, result.params


def drawn_voxels(segmentation, name: str, image_node) -> np.ndarray:
    """Where Slicer draws segment ``name`` (its stored labelmap through its own image-to-world matrix), as voxels
    of ``image_node``'s grid (through the image's RAS→IJK); asserts every drawn voxel centre is a voxel centre."""
    import vtk
    from vtk.util import numpy_support

    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
    assert segment_id, f"no segment {name!r}"
    labelmap = slicer.vtkOrientedImageData()
    assert slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation, segment_id, labelmap, False)
    e = labelmap.GetExtent()
    dims = image_node.GetImageData().GetDimensions()
    out = np.zeros(dims, bool)
    if e[0] > e[1]:
        return out
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(
        e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    value = segmentation.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    ijk = np.argwhere(values == value)[:, ::-1] + [e[0], e[2], e[4]]
    to_world, to_image = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(to_world)
    image_node.GetRASToIJKMatrix(to_image)
    world = slicer.util.arrayFromVTKMatrix(to_world)
    image = slicer.util.arrayFromVTKMatrix(to_image)
    ras = ijk @ world[:3, :3].T + world[:3, 3]
    voxel = ras @ image[:3, :3].T + image[:3, 3]
    index = np.rint(voxel).astype(int)
    assert np.abs(voxel - index).max(initial=0) < 1e-3, "the segment is not on the image's voxel grid"
    assert ((index >= 0) & (index < dims)).all(), "the segment reaches outside the image"
    out[tuple(index.T)] = True
    return out


def frame_masks(logic, clip: LoadedClip, segmentation, name: str = "lesion") -> np.ndarray:
    """(i, j, t): for a volume, the drawn voxels; for a sequence, frame t's proxy segmentation drawn on frame t's
    proxy image, browsing the clip as a user scrubs it."""
    if clip.browser is None:
        return drawn_voxels(segmentation, name, clip.node)
    sequence = clip.browser.GetSequenceNode(segmentation)
    assert sequence is not None and clip.browser.IsSynchronizedSequenceNodeID(sequence.GetID())
    assert sequence.GetNumberOfDataNodes() == clip.frames
    frames = []
    for t in range(clip.frames):
        clip.browser.SetSelectedItemNumber(t)
        frames.append(drawn_voxels(clip.browser.GetProxyNode(sequence), name, clip.node)[:, :, 0])
    return np.stack(frames, axis=2)


def paint(clip: LoadedClip, segmentation, frame: int, mask: np.ndarray, name: str = "lesion") -> None:
    """What a Segment Editor user does on frame ``frame``: erase it, then paint ``mask`` (i, j) there."""
    import vtk
    from vtk.util import numpy_support

    if clip.browser is not None:  # a sequence: go to the frame, edit the segmentation shown
        clip.browser.SetSelectedItemNumber(frame)
        segmentation = clip.browser.GetProxyNode(clip.browser.GetSequenceNode(segmentation))
        k = 0
    else:
        k = frame
    seg_logic = slicer.vtkSlicerSegmentationsModuleLogic
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
    extent = [0, clip.shape[0] - 1, 0, clip.shape[1] - 1, k, k]
    matrix = vtk.vtkMatrix4x4()
    clip.node.GetIJKToRASMatrix(matrix)
    erase, draw = np.zeros(clip.shape[:2], np.uint8), (np.asarray(mask) > 0).astype(np.uint8)
    for mode, values in ((seg_logic.MODE_MERGE_MIN, erase), (seg_logic.MODE_MERGE_MAX, draw)):
        image = slicer.vtkOrientedImageData()
        image.SetExtent(extent)
        image.SetImageToWorldMatrix(matrix)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = values.T.ravel()  # (j, i) order
        assert seg_logic.SetBinaryLabelmapToSegment(image, segmentation, segment_id, mode, extent)


def assert_varies(label: np.ndarray) -> None:
    """The geometry checks mean something only for masks that are neither empty nor full and differ by frame."""
    fraction = float((label > 0).mean())
    assert 0.02 < fraction < 0.98, f"the served model marks {fraction:.0%} of the clip: no geometry to check"
    assert any(not np.array_equal(label[:, :, t], label[:, :, 0]) for t in range(label.shape[2]))
    assert not np.array_equal(label, label[::-1]) and not np.array_equal(label, label[:, ::-1])


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("loading", ["volume", "sequence"])
@pytest.mark.parametrize("source", ["real", "synthetic"])
def test_segmentation_frame_t_covers_image_frame_t(logic, scene, client, us_dicom_dir, tmp_path, source, loading):
    clip = load(logic, scene, source, loading, us_dicom_dir)
    if loading == "volume":
        assert logic.uploadClip(clip.node) == clip.path.stem  # the DICOM file itself went to the datastore
    segmentation = logic.segmentClip(clip.node, MODEL)
    expected, answer = server_label(client, clip, tmp_path)
    assert expected.shape == clip.shape
    assert_varies(expected)
    drawn = frame_masks(logic, clip, segmentation)
    wrong = [t for t in range(clip.frames) if not np.array_equal(drawn[:, :, t], expected[:, :, t] > 0)]
    assert not wrong, f"frames {wrong} of the segmentation do not cover the same frames of the image in RAS"
    shown = segmentation.GetSegmentation()  # names and colours as the server gives them
    assert [shown.GetNthSegment(i).GetName() for i in range(shown.GetNumberOfSegments())] == list(
        answer["label_names"])
    for name, color in answer["label_colors"].items():
        np.testing.assert_allclose(shown.GetSegment(shown.GetSegmentIdBySegmentName(name)).GetColor(), color)


@pytest.mark.parametrize("loading", ["volume", "sequence"])
def test_edits_reach_the_server_with_reviewed_frames(logic, scene, client, us_dicom_dir, tmp_path, loading):
    clip = load(logic, scene, "synthetic", loading, us_dicom_dir)
    if loading == "volume":
        logic.uploadClip(clip.node)  # "Send clip to server": segmented by id, the label keeps the server's geometry
    segmentation = logic.segmentClip(clip.node, MODEL)
    with pytest.raises(USSegClipError, match="no frame of this clip is reviewed"):
        logic.submitLabel(clip.node, segmentation, MODEL)
    model_output = logic.readLabel(clip.node, segmentation, {"lesion": 1})
    truth = read_volume(SYNTHETIC_TRUTH).voxels
    assert truth.shape == clip.shape
    edits = {2: truth[:, :, 2], 5: truth[:, :, 5], 9: np.zeros(clip.shape[:2], np.uint8)}
    for frame, mask in edits.items():
        paint(clip, segmentation, frame, mask)
    if clip.browser is not None:
        clip.browser.SetSelectedItemNumber(0)
    assert logic.reviewedFrames(clip.node, segmentation) == [2, 5, 9]
    assert logic.markFrameReviewed(clip.node, segmentation, 11) == [2, 5, 9, 11]
    assert logic.reviewSummary(clip.node, segmentation) == "4 of 24 frames reviewed"
    expected = model_output.copy()
    for frame, mask in edits.items():
        expected[:, :, frame] = mask
    result = logic.submitLabel(clip.node, segmentation, MODEL)
    stored_dir = tmp_path / "stored"
    stored_dir.mkdir()
    stored = read_volume(client.download_label(result["label"], "final", stored_dir))
    np.testing.assert_array_equal(stored.voxels, expected)
    record = client.datastore("all")["objects"][result["image"]]["labels"]["final"]["info"]
    assert record["reviewed_frames"] == [2, 5, 9, 11]
    if loading == "volume":  # stored in the server's geometry of the DICOM (region spacing, no rotation)
        spacing = region_spacing_mm(SYNTHETIC)
        np.testing.assert_allclose(stored.ijk_to_ras, np.diag([spacing, spacing, 1.0, 1.0]), atol=1e-5)


def test_server_seg_nrrd_loads_through_segmentation_storage_node(logic, client, tmp_path):
    answer = client.infer(MODEL, image_id=SYNTHETIC.stem, params={"result_extension": ".seg.nrrd"})
    path = answer.save_label(tmp_path)
    assert path.endswith(".seg.nrrd")
    (tmp_path / "nifti").mkdir()
    nifti = read_volume(client.infer(MODEL, image_id=SYNTHETIC.stem).save_label(tmp_path / "nifti"))
    assert_varies(nifti.voxels)
    segmentation = logic.loadSegmentationFile(path)
    shown = segmentation.GetSegmentation()
    names = {shown.GetNthSegment(i).GetName(): shown.GetNthSegment(i) for i in range(shown.GetNumberOfSegments())}
    assert set(names) == set(answer.params["label_names"])
    for name, color in answer.params["label_colors"].items():
        np.testing.assert_allclose(names[name].GetColor(), color, atol=1e-3)
    grid = logic.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "grid")  # the server's image grid
    slicer.util.updateVolumeFromArray(grid, np.zeros(nifti.voxels.shape[::-1], np.uint8))
    set_ijk_to_ras(grid, nifti.ijk_to_ras)
    for name, value in answer.params["label_names"].items():
        np.testing.assert_array_equal(drawn_voxels(segmentation, name, grid), nifti.voxels == value)


def test_untrained_model_says_so_in_a_sentence(logic, scene, client, us_dicom_dir):
    usseg = client.info().get("usseg", {})
    if usseg.get("intrasense", {}).get("trained") is not False:
        pytest.skip("the server reports no untrained intrasense model (GET /info/ usseg.intrasense.trained)")
    clip = load(logic, scene, "synthetic", "volume", us_dicom_dir)
    with pytest.raises(ModelNotTrainedError) as err:
        logic.segmentFrame(clip.node, "intrasense", 3, clipModel=MODEL)
    message = str(err.value)
    assert message.startswith("The intrasense model on the server is not trained yet")
    assert "Refine from my edits" in message and "allow_untrained" not in message and "HTTP" not in message


def test_in_slicer_server_check(scene, server):
    """The steps Testing/Python/USSegClipModuleTest.py runs inside Slicer, here on slicer-core."""
    selftest.check_server_flow(*scene, server, strategy="first")


def refine_limits(client) -> dict:
    """``GET /info/`` models["dsanet_refine"]["refine"]: the server's limits and modes (skips without the task)."""
    models = client.info()["models"]
    if "dsanet_refine" not in models:
        pytest.skip("the server has no /infer/dsanet_refine yet")
    return models["dsanet_refine"].get("refine", {})


def wait_for_dropped_refinements(timeout: float = 120.0) -> None:
    """Wait until the requests of cancelled refinements are answered (the Lib's worker threads end then): the server
    runs one refinement at a time and answers 429 to the next one until then."""
    for thread in threading.enumerate():
        if thread.name == "usseg-refine":
            thread.join(timeout)


def reference_refinement(logic, clip: LoadedClip, label: np.ndarray, corrected, params) -> np.ndarray:
    """The server's refinement of ``label`` asked without the Logic: the request the Logic sends (by datastore id,
    or with the clip uploaded), in the geometry the Logic gives."""
    image_id = clip.node.GetAttribute(IMAGE_ID_ATTRIBUTE)
    where = {"image_id": image_id} if image_id else {"clip": logic.clipFromVolume(clip.node)}
    label_clip = Clip(label, server_geometry(logic, clip.node), 2)
    return refine_clip(logic.client, "dsanet_refine", label_clip, corrected, params=params, **where).voxels


def test_refine_from_edits(logic, scene, client, us_dicom_dir):
    budget = refine_limits(client).get("time_budget_s", 1.5)  # the server's limit
    clip = load(logic, scene, "synthetic", "volume", us_dicom_dir)
    logic.uploadClip(clip.node)
    segmentation = logic.segmentClip(clip.node, MODEL)
    truth = read_volume(SYNTHETIC_TRUTH).voxels
    corrected = [0, 12, 23]
    for frame in corrected:
        paint(clip, segmentation, frame, truth[:, :, frame])
    before = logic.readLabel(clip.node, segmentation, {"lesion": 1})
    params = {"max_steps": 3, "time_budget_s": budget, "seed": 0}  # 3 steps come first
    waited = []
    refined = logic.refineClip(clip.node, segmentation, MODEL, progress=lambda s, b, p: waited.append((s, b, p)),
                               params=params)
    after = logic.readLabel(clip.node, refined, {"lesion": 1})
    for frame in corrected:
        np.testing.assert_array_equal(after[:, :, frame], truth[:, :, frame])  # as drawn
    assert logic.reviewedFrames(clip.node, refined) == corrected
    assert waited and waited[-1][1] == budget
    reference = reference_refinement(logic, clip, before, corrected, params)  # the same request, without the Logic
    others = [t for t in range(clip.frames) if t not in corrected]
    np.testing.assert_array_equal(after[:, :, others], reference[:, :, others])
    drawn = drawn_voxels(refined, "lesion", clip.node)
    np.testing.assert_array_equal(drawn, after > 0)  # and drawn where it belongs

    cancel = threading.Event()  # cancelled before any answer: the segmentation stays as it was
    cancel.set()
    assert logic.refineClip(clip.node, refined, MODEL, cancel=cancel, params={"max_steps": 2, "seed": 0}) is None
    np.testing.assert_array_equal(logic.readLabel(clip.node, refined, {"lesion": 1}), after)


@pytest.mark.parametrize("loading", ["volume", "sequence"])
def test_refine_shows_the_propagated_label_then_the_refined_one(logic, scene, client, us_dicom_dir, loading):
    """The propagated label is in the segmentation when ``onPropagated`` is called, then the refined one; frames
    the user drew, before or while the server refines, are never overwritten and stay reviewed; cancelling in the
    second phase leaves the propagated label."""
    if "propagate" not in refine_limits(client).get("modes", []):
        pytest.skip("the server's dsanet_refine has no propagate mode yet")
    clip = load(logic, scene, "synthetic", loading, us_dicom_dir)
    if loading == "volume":
        logic.uploadClip(clip.node)
    segmentation = logic.segmentClip(clip.node, MODEL)
    truth = read_volume(SYNTHETIC_TRUTH).voxels
    corrected, meanwhile = [0, 12, 23], 6  # frame 6: drawn while the server refines
    for frame in corrected:
        paint(clip, segmentation, frame, truth[:, :, frame])
    if clip.browser is not None:
        clip.browser.SetSelectedItemNumber(0)
    before = logic.readLabel(clip.node, segmentation, {"lesion": 1})
    params = {"max_steps": 3, "seed": 0}
    edit = np.zeros(clip.shape[:2], np.uint8)
    edit[10:30, 20:40] = 1
    shown, phases = [], []

    def on_propagated(seg):
        shown.append((logic.readLabel(clip.node, seg, {"lesion": 1}), logic.reviewedFrames(clip.node, seg)))
        paint(clip, seg, meanwhile, edit)  # the user goes on editing while the refined label is computed

    refined = logic.refineClip(clip.node, segmentation, MODEL, progress=lambda s, b, p: phases.append(p),
                               params=params, onPropagated=on_propagated)
    assert refined is not None and len(shown) == 1
    assert phases[0] == "propagate" and phases[-1] == "refine" and phases == sorted(phases, key=["propagate",
                                                                                               "refine"].index)
    propagated, reviewed_then = shown[0]
    assert reviewed_then == corrected
    others = [t for t in range(clip.frames) if t not in corrected]
    expected = reference_refinement(logic, clip, before, corrected, {**params, "mode": "propagate"})
    np.testing.assert_array_equal(propagated[:, :, others], expected[:, :, others])
    after = logic.readLabel(clip.node, refined, {"lesion": 1})
    for frame in corrected:
        np.testing.assert_array_equal(propagated[:, :, frame], truth[:, :, frame])  # as drawn, in both phases
        np.testing.assert_array_equal(after[:, :, frame], truth[:, :, frame])
    np.testing.assert_array_equal(after[:, :, meanwhile], edit)  # drawn during the second phase: kept
    assert logic.reviewedFrames(clip.node, refined) == sorted([*corrected, meanwhile])
    rest = [t for t in others if t != meanwhile]
    hybrid = reference_refinement(logic, clip, before, corrected, {**params, "mode": "hybrid"})
    np.testing.assert_array_equal(after[:, :, rest], hybrid[:, :, rest])

    cancel, shown = threading.Event(), []  # Cancel pressed once the propagated label shows: it stays
    reviewed = logic.reviewedFrames(clip.node, refined)

    def cancel_when_shown(seg):
        shown.append(logic.readLabel(clip.node, seg, {"lesion": 1}))
        cancel.set()

    assert logic.refineClip(clip.node, refined, MODEL, cancel=cancel, params=params,
                            onPropagated=cancel_when_shown) is None
    wait_for_dropped_refinements()
    assert len(shown) == 1
    np.testing.assert_array_equal(logic.readLabel(clip.node, refined, {"lesion": 1}), shown[0])
    assert logic.reviewedFrames(clip.node, refined) == reviewed
