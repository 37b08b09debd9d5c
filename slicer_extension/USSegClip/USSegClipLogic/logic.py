"""USSegClipLogic: the Slicer half of the module that needs no GUI — volume and sequence nodes ↔ clips, server
labels ↔ segmentations (one over a volume, one per frame in a sequence synchronized with the cine's browser),
reviewed frames, and the server round trips (segment, submit, refine, train) through ``USSegClipLib``.

Imports only ``slicer`` (MRML nodes, ``slicer.util`` array helpers, module logic classes), ``vtk``, numpy and
``USSegClipLib``: it runs inside 3D Slicer and on the ``slicer-core`` wheel (tests/test_slicer_mrml*.py).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import slicer
import vtk
from USSegClipLib import (
    Clip,
    MonaiLabelClient,
    SegmentStyle,
    TrainingMonitor,
    USSegClipError,
    changed_frames,
    compose_labelmap,
    fit_label_to_clip,
    format_frames,
    frame_index_from_ras,
    infer_clip,
    infer_frame,
    infer_image,
    kji_to_ijk,
    label_palette,
    matrix_from_text,
    matrix_to_text,
    models_of_dimension,
    parse_frames,
    ras_of_frame,
    read_volume,
    refine_clip,
    refine_model_name,
    rename_labels,
    review_summary,
    stack_frames,
    to_grey,
    write_nifti,
    write_seg_nrrd,
)

from .mrml import ensure_segmentation_converters, ijk_to_ras, segment_masks, write_segment_mask

__all__ = [
    "IMAGE_ID_ATTRIBUTE",
    "MODULE_NAME",
    "REVIEWED_ATTRIBUTE",
    "SERVER_MATRIX_ATTRIBUTE",
    "USSegClipLogic",
]

MODULE_NAME = "USSegClip"
IMAGE_ID_ATTRIBUTE = "USSegClip.ImageId"
SERVER_MATRIX_ATTRIBUTE = "USSegClip.ServerIJKToRAS"
REVIEWED_ATTRIBUTE = "USSegClip.ReviewedFrames"
REQUIRED_PACKAGES = {"nibabel": "nibabel", "nrrd": "pynrrd", "slicerio": "slicerio"}

Progress = Callable[[int, int], None]


class USSegClipLogic:
    """Slicer-side work: nodes ↔ :class:`USSegClipLib.Clip`, segmentations ↔ labelmaps; the server through Lib.

    Args:
        scene: the MRML scene (default ``slicer.mrmlScene`` inside 3D Slicer; required with ``slicer-core``).
        client: an existing :class:`MonaiLabelClient` (tests); normally made by :meth:`connect`.
        sequencesLogic: the Sequences module's logic (3D Slicer: ``slicer.modules.sequences.logic()``); by default
            a ``vtkSlicerSequencesLogic`` of its own on ``scene`` (it moves proxy nodes when a browser changes item).

    A clip is either a volume with its frames along k, or the proxy of a sequence of 2-D frames (a DICOM cine that
    Slicer loaded as a Sequence). Its label is one segmentation over the volume, or one segmentation per frame in a
    sequence synchronized with the clip's browser.

    Reviewed frames: frames the user changed since the module last wrote a model's output (found by comparing the
    segments with that output) plus frames marked reviewed; kept on the segmentation (its sequence for a cine
    sequence) as the attribute ``USSegClip.ReviewedFrames`` and sent with the submitted label.

    Examples::

        logic = USSegClipLogic(scene)
        info = logic.connect("http://127.0.0.1:8000")
        seg = logic.segmentClip(volume, "dsanet")
        # ... the user edits frames 3 and 7 in the Segment Editor ...
        logic.reviewedFrames(volume, seg)          # [3, 7]
        logic.submitLabel(volume, seg, "dsanet")   # params {"reviewed_frames": [3, 7], ...}
    """

    def __init__(self, scene=None, client: MonaiLabelClient | None = None, sequencesLogic=None):
        if scene is None:
            scene = getattr(slicer, "mrmlScene", None)
        if scene is None:
            raise ValueError("no MRML scene: pass scene= (slicer-core has no slicer.mrmlScene)")
        self.scene = scene
        self.client = client
        self.info = client.info() if client is not None else None
        self.monitors: dict[str, TrainingMonitor] = {}
        self.palettes: dict[str, list[SegmentStyle]] = {}
        self._baselines: dict[str, dict[str, np.ndarray]] = {}
        ensure_segmentation_converters()
        if sequencesLogic is None:
            sequencesLogic = slicer.vtkSlicerSequencesLogic()
            sequencesLogic.SetMRMLScene(scene)
        self.sequencesLogic = sequencesLogic

    # ------------------------------------------------------------------ settings
    def parameterNode(self):
        """The module's singleton ``vtkMRMLScriptedModuleNode`` (the Widget wraps it in its parameter node)."""
        node = self.scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = self.scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(MODULE_NAME)
            node.SetName(self.scene.GenerateUniqueName(MODULE_NAME))
            node = self.scene.AddNode(node)
        return node

    @staticmethod
    def missingPackages() -> list[str]:
        """The pip names of the Python packages Lib needs and this Python lacks."""
        missing = []
        for module, package in REQUIRED_PACKAGES.items():
            try:
                __import__(module)
            except ImportError:
                missing.append(package)
        return missing

    @classmethod
    def ensurePackages(cls, install: bool = False) -> list[str]:
        """Import the packages Lib needs; install the missing ones with ``slicer.util.pip_install`` when ``install``.

        Raises:
            USSegClipError: packages are missing (and were not to be installed).
        """
        missing = cls.missingPackages()
        if missing and install:
            slicer.util.pip_install(" ".join(missing))
            return cls.ensurePackages(install=False)
        if missing:
            names = " ".join(missing)
            raise USSegClipError(f"missing Python packages {missing}: run slicer.util.pip_install('{names}')")
        return []

    # ------------------------------------------------------------------ server
    def connect(self, url: str, token: str = "") -> dict[str, Any]:
        """Open a client for ``url`` and read ``/info/``; returns the info dict."""
        self.ensurePackages(install=False)
        client = MonaiLabelClient(url, token=token or None)
        self.info = client.info()
        self.client = client
        self.monitors = {}
        self.palettes = {}
        return self.info

    def requireClient(self) -> MonaiLabelClient:
        if self.client is None:
            raise USSegClipError("not connected: enter the server URL and press Connect")
        return self.client

    def serverInfo(self) -> dict[str, Any]:
        if self.info is None:
            self.info = self.requireClient().info()
        return self.info

    def clipModels(self, info: dict[str, Any]) -> list[str]:
        """Models that take a cine (dimension 3), dsanet first; refinement tasks are not listed."""
        return [m for m in models_of_dimension(info, 3, "dsanet") if not m.endswith("_refine")]

    def imageModels(self, info: dict[str, Any]) -> list[str]:
        """Models that take a single image (dimension 2), intrasense first."""
        return models_of_dimension(info, 2, "intrasense")

    def palette(self, model: str, answer: dict[str, Any] | None = None) -> list[SegmentStyle]:
        """Segment names, values and colours of ``model`` as the server gives them (latest infer answer first)."""
        if answer and answer.get("label_names"):
            self.palettes[model] = label_palette(answer)
        if model not in self.palettes:
            return label_palette(None, self.serverInfo(), model)
        return self.palettes[model]

    def labelValues(self, model: str) -> dict[str, int]:
        return {style.name: style.value for style in self.palette(model)}

    # ------------------------------------------------------------------ clips and nodes
    @staticmethod
    def ijkToRas(node) -> np.ndarray:
        return ijk_to_ras(node)

    def browserForVolume(self, volume):
        """The sequence browser whose proxy is ``volume`` (a cine loaded as a Sequence), or None."""
        if volume is None:
            return None
        return self.sequencesLogic.GetFirstBrowserNodeForProxyNode(volume)

    def _frameNodes(self, browser, sequence) -> list:
        """The data nodes of ``sequence`` in the browser's item order (no browsing: the views do not move)."""
        master = browser.GetMasterSequenceNode()
        nodes = []
        for item in range(browser.GetNumberOfItems()):
            node = sequence.GetDataNodeAtValue(master.GetNthIndexValue(item))
            if node is None:
                raise USSegClipError(f"sequence {sequence.GetName()!r} has no item {item} of the clip's browser")
            nodes.append(node)
        return nodes

    def clipFromVolume(self, volume) -> Clip:
        """:class:`Clip` of a volume node (frames along k) or of the sequence whose proxy is ``volume``."""
        if volume is None or volume.GetImageData() is None:
            raise USSegClipError("select a clip (a volume with voxels) first")
        browser = self.browserForVolume(volume)
        if browser is not None:
            return self.clipFromSequence(browser, volume)
        voxels = kji_to_ijk(to_grey(slicer.util.arrayFromVolume(volume)))
        return Clip(np.array(voxels), ijk_to_ras(volume), 2)

    def clipFromSequence(self, browser, proxy) -> Clip:
        """Stack a sequence of 2-D frames into (i, j, t); the frame step is 1 along the frame plane's normal."""
        frames, matrix = [], None
        for item, node in enumerate(self._frameNodes(browser, browser.GetSequenceNode(proxy))):
            array = to_grey(slicer.util.arrayFromVolume(node))
            if array.shape[0] != 1:
                raise USSegClipError(f"sequence item {item} is not a 2-D frame (shape {array.shape})")
            frames.append(np.array(kji_to_ijk(array))[:, :, 0])
            if matrix is None:
                matrix = ijk_to_ras(node)
        return stack_frames(frames, matrix)

    def numberOfFrames(self, volume) -> int:
        browser = self.browserForVolume(volume)
        if browser is not None:
            return browser.GetNumberOfItems()
        return volume.GetImageData().GetDimensions()[2]

    def currentFrame(self, volume, sliceNode=None) -> int | None:
        """Frame shown now: the browser's item, or RAS→IJK of the slice view's centre (never its slice offset)."""
        browser = self.browserForVolume(volume)
        if browser is not None:
            return browser.GetSelectedItemNumber()
        if sliceNode is None:
            return None
        centre = slicer.util.arrayFromVTKMatrix(sliceNode.GetSliceToRAS())[:3, 3]
        try:
            return frame_index_from_ras(ijk_to_ras(volume), centre, 2, volume.GetImageData().GetDimensions()[2])
        except USSegClipError:
            return None

    def showFrame(self, volume, frame: int) -> None:
        """Bring ``frame`` into the views: select it in the browser, or centre every slice view on it."""
        browser = self.browserForVolume(volume)
        if browser is not None:
            browser.SetSelectedItemNumber(int(frame))
            return
        ras = ras_of_frame(ijk_to_ras(volume), volume.GetImageData().GetDimensions(), int(frame), 2)
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.scene, float(ras[0]), float(ras[1]), float(ras[2]),
                                              slicer.vtkMRMLSliceNode.CenteredJumpSlice)

    def loadVolumeFile(self, path: str, name: str | None = None):
        """Load an image file (NIfTI, NRRD, a multi-frame DICOM: frames on k) as a scalar or colour volume node."""
        name = name or re.sub(r"(\.nii\.gz|\.[^.]+)$", "", os.path.basename(path))
        for node_class in ("vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"):
            storage = self.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            storage.SetFileName(path)
            storage.SetSingleFile(1)
            volume = self.scene.AddNewNodeByClass(node_class, name)
            shown = vtk.vtkObject.GetGlobalWarningDisplay()
            if node_class == "vtkMRMLScalarVolumeNode":
                vtk.vtkObject.GlobalWarningDisplayOff()  # a colour file fails here first: expected, not an error
            try:
                read = storage.ReadData(volume)
            finally:
                vtk.vtkObject.SetGlobalWarningDisplay(shown)
            if read:
                volume.SetAndObserveStorageNodeID(storage.GetID())
                volume.CreateDefaultDisplayNodes()
                return volume
            self.scene.RemoveNode(volume)
            self.scene.RemoveNode(storage)
        raise USSegClipError(f"Slicer could not read {path} as a volume")

    def dicomFile(self, volume) -> str | None:
        """The DICOM file a clip was loaded from (DICOM database instance, or a ``.dcm`` storage file), or None."""
        uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if len(uids) == 1 and database is not None:
            path = database.fileForInstance(uids[0])
            if path and os.path.isfile(path):
                return path
        storage = volume.GetStorageNode()
        path = storage.GetFileName() if storage is not None else None
        if path and path.lower().endswith(".dcm") and os.path.isfile(path):
            return path
        return None

    # ------------------------------------------------------------------ segmentation nodes
    def ensureSegmentation(self, volume, segmentation, palette: list[SegmentStyle]):
        """A segmentation on ``volume``'s grid holding one segment per server label (names and colours from the
        server; Slicer picks a colour where the server gives none)."""
        if segmentation is None:
            segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} label")
        if segmentation.GetScene() is not None and segmentation.GetDisplayNode() is None:
            segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        seg = segmentation.GetSegmentation()
        for style in palette:
            if not seg.GetSegmentIdBySegmentName(style.name):
                segment_id = seg.AddEmptySegment(style.name, style.name)
                if style.color is not None:
                    seg.GetSegment(segment_id).SetColor(*style.color)
        return segmentation

    def _segmentationSequence(self, browser, proxy, segmentation):
        """The segmentation sequence synchronized with ``browser`` (created with one empty segmentation per item)."""
        if segmentation is not None:
            sequence = browser.GetSequenceNode(segmentation)
            if sequence is not None:
                return sequence
        volumes = browser.GetSequenceNode(proxy)
        sequence = self.scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{proxy.GetName()} label")
        sequence.SetIndexName(volumes.GetIndexName())
        sequence.SetIndexUnit(volumes.GetIndexUnit())
        sequence.SetIndexType(volumes.GetIndexType())  # browsing requires matching index types
        for item in range(volumes.GetNumberOfDataNodes()):
            sequence.SetDataNodeAtValue(slicer.vtkMRMLSegmentationNode(), volumes.GetNthIndexValue(item))
        browser.AddSynchronizedSequenceNode(sequence)
        browser.SetSaveChanges(sequence, True)  # edits of the shown frame go back into the sequence
        self.sequencesLogic.UpdateProxyNodesFromSequences(browser)
        return sequence

    def _stateNode(self, volume, segmentation):
        """Where a clip label's review state lives: the segmentation sequence of a cine sequence, else the node."""
        browser = self.browserForVolume(volume)
        if browser is not None and segmentation is not None:
            sequence = browser.GetSequenceNode(segmentation)
            if sequence is not None:
                return sequence
        return segmentation

    def writeLabel(self, volume, segmentation, label: Clip, palette: list[SegmentStyle],
                   frames: Iterable[int] | None = None):
        """Paint a label clip (IJK order, values = server labels) into the segments; only ``frames`` when given.

        Returns the segmentation (for a cine sequence: the proxy of its per-frame segmentation sequence).
        """
        frames = list(range(label.num_frames)) if frames is None else sorted({int(f) for f in frames})
        browser = self.browserForVolume(volume)
        if browser is not None:
            return self._writeSequenceLabel(browser, volume, segmentation, label, palette, frames)
        segmentation = self.ensureSegmentation(volume, segmentation, palette)
        current = segment_masks(segmentation, volume)
        seg = segmentation.GetSegmentation()
        for style in palette:
            mask = current.get(style.name, np.zeros(label.voxels.shape, bool)).copy()
            for t in frames:
                mask[:, :, t] = label.voxels[:, :, t] == style.value
            write_segment_mask(segmentation, seg.GetSegmentIdBySegmentName(style.name), volume, mask)
        return segmentation

    def _writeSequenceLabel(self, browser, proxy, segmentation, label, palette, frames):
        """Per-frame segmentations in the sequence synchronized with the browser; returns its proxy segmentation."""
        sequence = self._segmentationSequence(browser, proxy, segmentation)
        frame_volumes = self._frameNodes(browser, browser.GetSequenceNode(proxy))
        frame_segs = self._frameNodes(browser, sequence)
        for t in frames:
            frame_seg = self.ensureSegmentation(frame_volumes[t], frame_segs[t], palette)
            seg = frame_seg.GetSegmentation()
            for style in palette:
                mask = label.voxels[:, :, t : t + 1] == style.value
                write_segment_mask(frame_seg, seg.GetSegmentIdBySegmentName(style.name), frame_volumes[t], mask)
        self.sequencesLogic.UpdateProxyNodesFromSequences(browser)  # the shown frame's proxy gets the new label
        shown = browser.GetProxyNode(sequence)
        if shown.GetDisplayNode() is None:
            shown.CreateDefaultDisplayNodes()
        return shown

    def readMasks(self, volume, segmentation) -> dict[str, np.ndarray]:
        """Segment name → boolean (i, j, t) mask over every frame of the clip."""
        browser = self.browserForVolume(volume)
        if browser is None:
            return segment_masks(segmentation, volume)
        sequence = browser.GetSequenceNode(segmentation)
        if sequence is None:
            raise USSegClipError("the segmentation is not part of the clip's sequence browser")
        frame_volumes = self._frameNodes(browser, browser.GetSequenceNode(volume))
        frame_segs = self._frameNodes(browser, sequence)
        shown = browser.GetSelectedItemNumber()
        per_frame = []
        for t, (frame_volume, frame_seg) in enumerate(zip(frame_volumes, frame_segs)):
            source = segmentation if t == shown else frame_seg  # the shown frame may hold unsaved edits
            per_frame.append(segment_masks(source, frame_volume))
        names = sorted({name for masks in per_frame for name in masks})
        shape = frame_volumes[0].GetImageData().GetDimensions()[:2]
        empty = np.zeros(shape, bool)
        return {name: np.stack([m.get(name, empty[:, :, None])[:, :, 0] for m in per_frame], axis=2)
                for name in names}

    def readLabel(self, volume, segmentation, labels: dict[str, int]) -> np.ndarray:
        """Every frame's label as one (i, j, t) array with the server's label values."""
        return compose_labelmap(self.readMasks(volume, segmentation), labels)

    # ------------------------------------------------------------------ reviewed frames
    def _recorded(self, volume, segmentation) -> set[int]:
        node = self._stateNode(volume, segmentation)
        return set(parse_frames(node.GetAttribute(REVIEWED_ATTRIBUTE))) if node is not None else set()

    def _setRecorded(self, volume, segmentation, frames: Iterable[int]) -> None:
        self._stateNode(volume, segmentation).SetAttribute(REVIEWED_ATTRIBUTE, format_frames(frames))

    def _setBaseline(self, volume, segmentation, masks: dict[str, np.ndarray] | None = None) -> None:
        """Remember the segments as the module wrote them (a model's output): edits are measured against it."""
        node = self._stateNode(volume, segmentation)
        self._baselines[node.GetID()] = masks if masks is not None else self.readMasks(volume, segmentation)

    def editedFrames(self, volume, segmentation) -> list[int]:
        """Frames whose segments differ from what the module last wrote there (none known: no frames)."""
        if volume is None or segmentation is None:
            return []
        baseline = self._baselines.get(self._stateNode(volume, segmentation).GetID())
        if baseline is None:
            return []
        return changed_frames(self.readMasks(volume, segmentation), baseline)

    def reviewedFrames(self, volume, segmentation) -> list[int]:
        """Frames the user edited or marked reviewed, sorted; also recorded on the node (saved with the scene)."""
        if volume is None or segmentation is None:
            return []
        recorded = self._recorded(volume, segmentation)
        frames = sorted(recorded | set(self.editedFrames(volume, segmentation)))
        if set(frames) != recorded:
            self._setRecorded(volume, segmentation, frames)
        return frames

    def markFrameReviewed(self, volume, segmentation, frame: int, reviewed: bool = True) -> list[int]:
        """Mark (or unmark) one frame reviewed without editing it; edited frames stay reviewed. Returns all."""
        n = self.numberOfFrames(volume)
        if not 0 <= int(frame) < n:
            raise USSegClipError(f"frame {frame} out of range: the clip has {n} frames")
        if segmentation is None:
            raise USSegClipError("segment the clip (or choose its segmentation) first")
        recorded = self._recorded(volume, segmentation)
        recorded = recorded | {int(frame)} if reviewed else recorded - {int(frame)}
        self._setRecorded(volume, segmentation, recorded)
        return self.reviewedFrames(volume, segmentation)

    def markAllFramesReviewed(self, volume, segmentation) -> list[int]:
        """Mark every frame reviewed (the user checked the whole clip)."""
        if segmentation is None:
            raise USSegClipError("segment the clip (or choose its segmentation) first")
        self._setRecorded(volume, segmentation, range(self.numberOfFrames(volume)))
        return self.reviewedFrames(volume, segmentation)

    def reviewSummary(self, volume, segmentation) -> str:
        """``"k of N frames reviewed"`` for the panel."""
        if volume is None or volume.GetImageData() is None:
            return "-"
        return review_summary(self.reviewedFrames(volume, segmentation), self.numberOfFrames(volume))

    def _foldEdits(self, volume, segmentation) -> None:
        """Record the frames edited so far, and take the current segments as the new comparison point."""
        self.reviewedFrames(volume, segmentation)
        self._setBaseline(volume, segmentation)

    # ------------------------------------------------------------------ server work
    def loadNextSample(self, strategy: str):
        """Ask the server for the next clip, download and load it; the node remembers its datastore id."""
        client = self.requireClient()
        sample = client.next_sample(strategy)
        if not sample or "id" not in sample:
            raise USSegClipError(f"the server has no clip left to label (strategy {strategy!r})")
        path = client.download_image(sample["id"], tempfile.mkdtemp(prefix="usseg_"))
        volume = self.loadVolumeFile(path)
        volume.SetAttribute(IMAGE_ID_ATTRIBUTE, sample["id"])
        return volume

    def uploadClip(self, volume) -> str:
        """Add the clip to the server's datastore (its DICOM file when known, else NIfTI); returns the image id."""
        if volume is None:
            raise USSegClipError("select a clip first")
        client = self.requireClient()
        path = self.dicomFile(volume) if self.browserForVolume(volume) is None else None
        if path is None:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", volume.GetName()).strip("._") or "clip"
            path = os.path.join(tempfile.mkdtemp(prefix="usseg_"), f"{name}.nii.gz")
            write_nifti(self.clipFromVolume(volume), path)
        image_id = client.upload_image(path)
        volume.SetAttribute(IMAGE_ID_ATTRIBUTE, image_id)
        return image_id

    def segmentClip(self, volume, model: str, segmentation=None, chunkFrames: int | None = None,
                    progress: Progress | None = None, params: dict[str, Any] | None = None):
        """Run the cine model on every frame and show the result (a segmentation, or one per frame of a sequence).

        ``params`` are extra inference parameters (e.g. ``{"allow_untrained": True}``). The new label is a model's
        output: no frame of it counts as reviewed.
        """
        if volume is None:
            raise USSegClipError("select a clip first")
        client = self.requireClient()
        clip = self.clipFromVolume(volume)
        image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE)
        answer: dict[str, Any] = {}
        if image_id and not chunkFrames:
            if progress:
                progress(0, clip.num_frames)
            server_label = infer_image(client, model, image_id, params=params, answer=answer)
            volume.SetAttribute(SERVER_MATRIX_ATTRIBUTE, matrix_to_text(server_label.ijk_to_ras))
            label = fit_label_to_clip(server_label, clip)
            if progress:
                progress(clip.num_frames, clip.num_frames)
        else:
            label = infer_clip(client, model, clip, chunk_frames=chunkFrames, progress=progress, params=params,
                               answer=answer)
        palette = self.palette(model, answer)
        segmentation = self.writeLabel(volume, segmentation, label, palette)
        self._setRecorded(volume, segmentation, [])
        self._setBaseline(volume, segmentation)
        return segmentation

    def segmentFrame(self, volume, model: str, frame: int, segmentation=None, clipModel: str | None = None,
                     params: dict[str, Any] | None = None):
        """Run the image model on one frame and paint that frame of the segmentation.

        With ``clipModel`` the result is painted into the clip model's segments (see ``rename_labels``), so one
        segmentation holds the clip's label whichever model produced a frame. The frame is a model's output
        again (not reviewed); edits elsewhere are kept.
        """
        if volume is None:
            raise USSegClipError("select a clip first")
        if not model:
            raise USSegClipError("the server offers no single-image model")
        client = self.requireClient()
        clip = self.clipFromVolume(volume)
        answer: dict[str, Any] = {}
        one = infer_frame(client, model, clip, frame, params=params, answer=answer)
        palette = self.palette(model, answer)
        full = np.zeros(clip.voxels.shape, np.uint8)
        full[:, :, frame] = one.voxels[:, :, 0]
        if clipModel:
            clip_palette = self.palette(clipModel)
            full = rename_labels(full, {s.name: s.value for s in palette}, {s.name: s.value for s in clip_palette})
            palette = clip_palette
        if segmentation is not None:
            self._foldEdits(volume, segmentation)
        segmentation = self.writeLabel(volume, segmentation, Clip(full, clip.ijk_to_ras, 2), palette, frames=[frame])
        recorded = self._recorded(volume, segmentation) - {int(frame)}
        masks = self.readMasks(volume, segmentation)
        baseline = self._baselines.get(self._stateNode(volume, segmentation).GetID())
        if baseline is not None:  # only this frame becomes model output; other frames keep their comparison point
            for name, mask in masks.items():
                if name in baseline:
                    mask = baseline[name].copy()
                    mask[:, :, frame] = masks[name][:, :, frame]
                    masks[name] = mask
        self._setRecorded(volume, segmentation, recorded)
        self._setBaseline(volume, segmentation, masks)
        return segmentation

    def _serverGeometry(self, volume) -> np.ndarray:
        """IJK→RAS of the clip as the server holds it (after a by-id inference), else the node's."""
        text = volume.GetAttribute(SERVER_MATRIX_ATTRIBUTE)
        return matrix_from_text(text) if text else self.clipFromVolume(volume).ijk_to_ras

    def submitLabel(self, volume, segmentation, model: str, reviewedFrames: Iterable[int] | None = None):
        """Save every frame's label on the server with the frames the user reviewed (uploading the clip first when
        it is not there yet). Returns the server's answer.

        Raises:
            USSegClipError: no frame is reviewed (edit frames or mark them reviewed first).
        """
        if volume is None or segmentation is None:
            raise USSegClipError("select the clip and its segmentation first")
        client = self.requireClient()
        reviewed = sorted(set(reviewedFrames)) if reviewedFrames is not None else self.reviewedFrames(
            volume, segmentation)
        if not reviewed:
            raise USSegClipError("no frame of this clip is reviewed: correct frames in the Segment Editor or mark "
                                 "them reviewed before submitting (the server learns only from reviewed frames)")
        palette = self.palette(model)
        labels = {s.name: s.value for s in palette}
        label = self.readLabel(volume, segmentation, labels)
        image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE) or self.uploadClip(volume)
        matrix = self._serverGeometry(volume)
        directory = tempfile.mkdtemp(prefix="usseg_")
        path = write_nifti(Clip(label.astype(np.uint8), matrix, 2), os.path.join(directory, f"{image_id}.nii.gz"))
        colors = {s.name: s.color for s in palette if s.color is not None}
        write_seg_nrrd(os.path.join(directory, f"{image_id}.seg.nrrd"), Clip(label, matrix, 2), labels, colors)
        result = client.save_label(image_id, path, params={"label_names": labels, "reviewed_frames": reviewed})
        self._setRecorded(volume, segmentation, reviewed)
        logging.info("label of %s saved on the server (%s), reviewed frames %s; local copy in %s", image_id, result,
                     reviewed, directory)
        return result

    def refineClip(self, volume, segmentation, model: str,
                   progress: Callable[[float, float | None], None] | None = None,
                   cancel: threading.Event | None = None, params: dict[str, Any] | None = None):
        """Refine the clip's label on the server from the frames the user edited or marked reviewed.

        The frames the user corrected stay as drawn; every other frame gets the refined label. Returns the
        segmentation, or None when ``cancel`` was set while waiting (nothing is changed then).

        Raises:
            USSegClipError: no reviewed frame, a model with several labels, or a server without refinement.
        """
        if volume is None or segmentation is None:
            raise USSegClipError("select the clip and its segmentation first")
        client = self.requireClient()
        task = refine_model_name(self.serverInfo(), model)
        corrected = self.reviewedFrames(volume, segmentation)
        if not corrected:
            raise USSegClipError("draw or correct the target on at least one frame (or mark a frame reviewed) "
                                 "before refining")
        palette = self.palette(model)
        if len(palette) != 1:
            raise USSegClipError(f"refinement works on single-label models; {model} has {len(palette)} labels")
        style = palette[0]
        label = self.readLabel(volume, segmentation, {style.name: style.value})
        clip = self.clipFromVolume(volume)
        image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE)
        binary = Clip((label == style.value).astype(np.uint8), self._serverGeometry(volume), 2)
        answer: dict[str, Any] = {}
        refined = refine_clip(client, task, binary, corrected, clip=None if image_id else clip, image_id=image_id,
                              params=params, progress=progress, cancel=cancel, answer=answer)
        if refined is None:
            return None
        refined = fit_label_to_clip(refined, clip)
        values = Clip(refined.voxels.astype(np.uint8) * np.uint8(style.value), clip.ijk_to_ras, 2)
        others = [t for t in range(clip.num_frames) if t not in set(corrected)]
        segmentation = self.writeLabel(volume, segmentation, values, palette, frames=others)
        self._setRecorded(volume, segmentation, corrected)
        self._setBaseline(volume, segmentation)
        logging.info("refined %s from frames %s: %s", volume.GetName(), corrected, answer.get("refinement"))
        return segmentation

    def loadLabelFile(self, path: str, volume, model: str):
        """Load a label file (NIfTI/NRRD/PNG) onto ``volume`` as a segmentation (for labels saved elsewhere)."""
        label = fit_label_to_clip(read_volume(path), self.clipFromVolume(volume))
        segmentation = self.writeLabel(volume, None, label, self.palette(model))
        self._setRecorded(volume, segmentation, [])
        self._setBaseline(volume, segmentation)
        return segmentation

    def loadSegmentationFile(self, path: str, name: str | None = None):
        """Load a ``.seg.nrrd`` through Slicer's segmentation storage node (segment names, colours and extent as
        the file holds them)."""
        storage = self.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(path)
        segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                    name or os.path.basename(path).split(".")[0])
        if not storage.ReadData(segmentation):
            self.scene.RemoveNode(segmentation)
            self.scene.RemoveNode(storage)
            raise USSegClipError(f"Slicer could not read the segmentation file {path}")
        segmentation.SetAndObserveStorageNodeID(storage.GetID())
        segmentation.CreateDefaultDisplayNodes()
        return segmentation

    # ------------------------------------------------------------------ training
    def monitor(self, model: str) -> TrainingMonitor:
        if model not in self.monitors:
            self.monitors[model] = TrainingMonitor(self.requireClient(), model)
        return self.monitors[model]

    def startTraining(self, model: str, maxEpochs: int):
        if not model:
            raise USSegClipError("choose a model to train")
        return self.monitor(model).start({"max_epochs": int(maxEpochs)})

    def pollTraining(self, model: str):
        return self.monitor(model).poll() if model else None

    def stopTraining(self):
        return self.requireClient().stop_training()
