"""USSegClipLogic.logic: the USSegClip module's Logic class, the Slicer half of the module that needs no GUI.

:class:`USSegClipLogic` is the one object the Widget and the tests use: it holds the scene, the server connection,
the models' palettes and training monitors, and offers every operation as a method. The work itself lives in the
package's other modules, each on one concern: ``frames`` (clip nodes ↔ :class:`USSegClipLib.Clip`, the frame in
view), ``nodefiles`` (files ↔ nodes), ``segmentations`` (labels ↔ segmentation nodes), ``reviewstate`` (reviewed
frames) and ``roundtrips`` (segment, submit, refine through ``USSegClipLib``).

Imports only ``slicer`` (MRML nodes, ``slicer.util`` array helpers, module logic classes), numpy and
``USSegClipLib``: it runs inside 3D Slicer and on the ``slicer-core`` wheel (tests/test_slicer_mrml*.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import slicer
from USSegClipLib import (
    Clip,
    MonaiLabelClient,
    SegmentStyle,
    TrainingMonitor,
    USSegClipError,
    compose_labelmap,
    fit_label_to_clip,
    label_palette,
    models_of_dimension,
    read_volume,
)

from . import frames, nodefiles, roundtrips, segmentations
from .mrml import ensure_segmentation_converters, ijk_to_ras
from .reviewstate import ReviewState
from .roundtrips import Progress

__all__ = ["MODULE_NAME", "USSegClipLogic"]

MODULE_NAME = "USSegClip"
REQUIRED_PACKAGES = {"nibabel": "nibabel", "nrrd": "pynrrd", "slicerio": "slicerio"}


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
        ensure_segmentation_converters()
        if sequencesLogic is None:
            sequencesLogic = slicer.vtkSlicerSequencesLogic()
            sequencesLogic.SetMRMLScene(scene)
        self.sequencesLogic = sequencesLogic
        self.review = ReviewState(sequencesLogic)

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

    # ------------------------------------------------------------------ clips and nodes (frames, nodefiles)
    @staticmethod
    def ijkToRas(node) -> np.ndarray:
        return ijk_to_ras(node)

    def browserForVolume(self, volume):
        """The sequence browser whose proxy is ``volume`` (a cine loaded as a Sequence), or None."""
        return frames.browser_for_volume(self.sequencesLogic, volume)

    def clipFromVolume(self, volume) -> Clip:
        """:class:`Clip` of a volume node (frames along k) or of the sequence whose proxy is ``volume``."""
        return frames.clip_from_volume(self.sequencesLogic, volume)

    def clipFromSequence(self, browser, proxy) -> Clip:
        """Stack a sequence of 2-D frames into (i, j, t); the frame step is 1 along the frame plane's normal."""
        return frames.clip_from_sequence(browser, proxy)

    def numberOfFrames(self, volume) -> int:
        return frames.number_of_frames(self.sequencesLogic, volume)

    def currentFrame(self, volume, sliceNode=None) -> int | None:
        """Frame shown now: the browser's item, or RAS→IJK of the slice view's centre (never its slice offset)."""
        return frames.current_frame(self.sequencesLogic, volume, sliceNode)

    def showFrame(self, volume, frame: int) -> None:
        """Bring ``frame`` into the views: select it in the browser, or centre every slice view on it."""
        frames.show_frame(self.scene, self.sequencesLogic, volume, frame)

    def loadVolumeFile(self, path: str, name: str | None = None):
        """Load an image file (NIfTI, NRRD, a multi-frame DICOM: frames on k) as a scalar or colour volume node."""
        return nodefiles.load_volume_file(self.scene, path, name)

    def dicomFile(self, volume) -> str | None:
        """The DICOM file a clip was loaded from (DICOM database instance, or a ``.dcm`` storage file), or None."""
        return nodefiles.dicom_file(volume)

    def loadSegmentationFile(self, path: str, name: str | None = None):
        """Load a ``.seg.nrrd`` as a segmentation node (segment names, colours and extent as the file holds them)."""
        return nodefiles.load_segmentation_file(self.scene, path, name)

    def loadLabelFile(self, path: str, volume, model: str):
        """Load a label file (NIfTI/NRRD/PNG) onto ``volume`` as a segmentation (for labels saved elsewhere)."""
        label = fit_label_to_clip(read_volume(path), self.clipFromVolume(volume))
        segmentation = self.writeLabel(volume, None, label, self.palette(model))
        self.review.model_output(volume, segmentation)
        return segmentation

    # ------------------------------------------------------------------ segmentation nodes (segmentations)
    def ensureSegmentation(self, volume, segmentation, palette: list[SegmentStyle]):
        """A segmentation on ``volume``'s grid holding one segment per server label."""
        return segmentations.ensure_segmentation(self.scene, volume, segmentation, palette)

    def writeLabel(self, volume, segmentation, label: Clip, palette: list[SegmentStyle],
                   frames: Iterable[int] | None = None):
        """Paint a label clip (IJK order, values = server labels) into the segments; only ``frames`` when given.

        Returns the segmentation (for a cine sequence: the proxy of its per-frame segmentation sequence).
        """
        return segmentations.write_label(self.scene, self.sequencesLogic, volume, segmentation, label, palette,
                                         frames)

    def readMasks(self, volume, segmentation) -> dict[str, np.ndarray]:
        """Segment name → boolean (i, j, t) mask over every frame of the clip."""
        return segmentations.read_masks(self.sequencesLogic, volume, segmentation)

    def readLabel(self, volume, segmentation, labels: dict[str, int]) -> np.ndarray:
        """Every frame's label as one (i, j, t) array with the server's label values."""
        return compose_labelmap(self.readMasks(volume, segmentation), labels)

    # ------------------------------------------------------------------ reviewed frames (reviewstate)
    def _setBaseline(self, volume, segmentation, masks: dict[str, np.ndarray] | None = None) -> None:
        """Remember the segments as the module wrote them (a model's output): edits are measured against it."""
        self.review.set_baseline(volume, segmentation, masks)

    def editedFrames(self, volume, segmentation) -> list[int]:
        """Frames whose segments differ from what the module last wrote there (none known: no frames)."""
        return self.review.edited(volume, segmentation)

    def reviewedFrames(self, volume, segmentation) -> list[int]:
        """Frames the user edited or marked reviewed, sorted; also recorded on the node (saved with the scene)."""
        return self.review.reviewed(volume, segmentation)

    def markFrameReviewed(self, volume, segmentation, frame: int, reviewed: bool = True) -> list[int]:
        """Mark (or unmark) one frame reviewed without editing it; edited frames stay reviewed. Returns all."""
        return self.review.mark(volume, segmentation, frame, reviewed)

    def markAllFramesReviewed(self, volume, segmentation) -> list[int]:
        """Mark every frame reviewed (the user checked the whole clip)."""
        return self.review.mark_all(volume, segmentation)

    def reviewSummary(self, volume, segmentation) -> str:
        """``"k of N frames reviewed"`` for the panel."""
        return self.review.summary(volume, segmentation)

    # ------------------------------------------------------------------ server work (roundtrips)
    def loadNextSample(self, strategy: str):
        """Ask the server for the next clip, download and load it; the node remembers its datastore id."""
        return roundtrips.load_next_sample(self, strategy)

    def uploadClip(self, volume) -> str:
        """Add the clip to the server's datastore (its DICOM file when known, else NIfTI); returns the image id."""
        return roundtrips.upload_clip(self, volume)

    def segmentClip(self, volume, model: str, segmentation=None, chunkFrames: int | None = None,
                    progress: Progress | None = None, params: dict[str, Any] | None = None):
        """Run the cine model on every frame and show the result (a segmentation, or one per frame of a sequence).

        ``params`` are extra inference parameters (e.g. ``{"allow_untrained": True}``). The new label is a model's
        output: no frame of it counts as reviewed.
        """
        return roundtrips.segment_clip(self, volume, model, segmentation, chunkFrames, progress, params)

    def segmentFrame(self, volume, model: str, frame: int, segmentation=None, clipModel: str | None = None,
                     params: dict[str, Any] | None = None):
        """Run the image model on one frame and paint that frame of the segmentation.

        With ``clipModel`` the result is painted into the clip model's segments (see ``rename_labels``), so one
        segmentation holds the clip's label whichever model produced a frame. The frame is a model's output
        again (not reviewed); edits elsewhere are kept.
        """
        return roundtrips.segment_frame(self, volume, model, frame, segmentation, clipModel, params)

    def submitLabel(self, volume, segmentation, model: str, reviewedFrames: Iterable[int] | None = None):
        """Save every frame's label on the server with the frames the user reviewed (see
        :func:`roundtrips.submit_label`). Returns the server's answer."""
        return roundtrips.submit_label(self, volume, segmentation, model, reviewedFrames)

    def refineClip(self, volume, segmentation, model: str,
                   progress: Callable[[float, float | None, str], None] | None = None,
                   cancel: threading.Event | None = None, params: dict[str, Any] | None = None,
                   onPropagated: Callable[[Any], None] | None = None):
        """Refine the clip's label on the server from the frames the user edited or marked reviewed: the
        propagated label is shown first (then ``onPropagated(segmentation)``), then the refined one (see
        :func:`roundtrips.refine_label`; ``progress(seconds, budget, phase)``); None when ``cancel`` was set while
        waiting. Reviewed frames are never overwritten."""
        return roundtrips.refine_label(self, volume, segmentation, model, progress, cancel, params, onPropagated)

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
