"""USSegClip: segment ultrasound cine clips against a MONAI Label server, frame by frame, inside 3D Slicer.

Widget (GUI, parameter node) → Logic (Slicer nodes ↔ numpy) → ``USSegClipLib`` (server and file formats; plain
Python, tested without Slicer). Nothing in this file talks HTTP.
"""

import html
import logging
import os
import re
import tempfile
from typing import Annotated, Optional

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from USSegClipLib import (
    Clip,
    MonaiLabelClient,
    TrainingMonitor,
    USSegClipError,
    compose_labelmap,
    fit_label_to_clip,
    frame_index_from_ras,
    ijk_to_kji,
    infer_clip,
    infer_frame,
    infer_image,
    kji_to_ijk,
    matrix_from_text,
    matrix_to_text,
    model_labels,
    models_of_dimension,
    ras_of_frame,
    read_volume,
    rename_labels,
    stack_frames,
    to_grey,
    write_nifti,
    write_seg_nrrd,
)

IMAGE_ID_ATTRIBUTE = "USSegClip.ImageId"
SERVER_MATRIX_ATTRIBUTE = "USSegClip.ServerIJKToRAS"
REQUIRED_PACKAGES = {"nibabel": "nibabel", "nrrd": "pynrrd", "slicerio": "slicerio"}


#
# Module
#
class USSegClip(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "US Seg Clip"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["usseg contributors"]
        self.parent.helpText = (
            "Segment every frame of an ultrasound cine with DSANet (or one frame with IntraSense-Net) on a MONAI "
            "Label server, edit with the Segment Editor, submit the clip label and follow retraining. "
            "See slicer_extension/README.md."
        )
        self.parent.acknowledgementText = "Built on MONAI Label and 3D Slicer."


#
# Parameter node
#
@parameterNodeWrapper
class USSegClipParameterNode:
    """Scene-saved settings (the auth token is deliberately not one of them)."""

    serverUrl: str = "http://127.0.0.1:8000"
    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    chunkFrames: Annotated[int, WithinRange(0, 10000)] = 0
    maxEpochs: Annotated[int, WithinRange(1, 10000)] = 2


#
# Widget
#
class USSegClipWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._sliceNode = None
        self._browser = None
        self._updatingFrame = False
        self.trainingTimer = qt.QTimer()
        self.trainingTimer.setInterval(3000)
        self.trainingTimer.timeout.connect(self.onPollTraining)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/USSegClip.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = USSegClipLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.connectButton.connect("clicked(bool)", self.onConnect)
        self.ui.nextSampleButton.connect("clicked(bool)", self.onNextSample)
        self.ui.uploadClipButton.connect("clicked(bool)", self.onUploadClip)
        self.ui.runClipModelButton.connect("clicked(bool)", self.onSegmentClip)
        self.ui.runImageModelButton.connect("clicked(bool)", self.onSegmentFrame)
        self.ui.editButton.connect("clicked(bool)", self.onEdit)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmit)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.stopTrainingButton.connect("clicked(bool)", self.onStopTraining)
        self.ui.clipModelComboBox.connect("currentIndexChanged(int)", self.updateLabelsText)
        self.ui.frameSliderWidget.connect("valueChanged(double)", self.onFrameSliderChanged)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputVolumeChanged)

        self.initializeParameterNode()
        self.updateButtons()

    def cleanup(self):
        self.trainingTimer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.updateButtons()

    # ------------------------------------------------------------------ messages
    def showMessage(self, text, error=False):
        color = "#c0392b" if error else "#2c3e50"
        self.ui.messageLabel.setText(f'<span style="color:{color}">{html.escape(str(text))}</span>')
        slicer.app.processEvents()

    def run(self, title, function, *args):
        """Run ``function``; show any error plainly (label + dialog) instead of a traceback."""
        self.showMessage(f"{title}…")
        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            result = function(*args)
        except (USSegClipError, ValueError) as e:  # the user's input or the server's answer: say it plainly
            qt.QApplication.restoreOverrideCursor()
            self.showMessage(f"{title} failed: {e}", error=True)
            slicer.util.errorDisplay(f"{title} failed:\n{e}")
            return None
        except Exception as e:  # unexpected: keep the traceback in the log
            qt.QApplication.restoreOverrideCursor()
            logging.exception("%s failed", title)
            self.showMessage(f"{title} failed: {e}", error=True)
            slicer.util.errorDisplay(f"{title} failed:\n{e}", detailedText=str(e))
            return None
        qt.QApplication.restoreOverrideCursor()
        self.showMessage(f"{title}: done")
        return result

    def updateButtons(self, caller=None, event=None):
        connected = self.logic.client is not None
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        seg = self._parameterNode.segmentation if self._parameterNode else None
        self.ui.nextSampleButton.enabled = connected
        self.ui.uploadClipButton.enabled = connected and volume is not None
        self.ui.runClipModelButton.enabled = connected and volume is not None
        self.ui.runImageModelButton.enabled = connected and volume is not None
        self.ui.submitButton.enabled = connected and volume is not None and seg is not None
        self.ui.editButton.enabled = seg is not None
        self.ui.trainButton.enabled = connected
        self.ui.stopTrainingButton.enabled = connected

    # ------------------------------------------------------------------ server
    def onConnect(self):
        info = self.run("Connecting", self.logic.connect, self.ui.serverUrlLineEdit.text, self.ui.tokenLineEdit.text)
        if info is None:
            self.ui.serverStatusLabel.text = "not connected"
            self.updateButtons()
            return
        for combo, items in (
            (self.ui.clipModelComboBox, self.logic.clipModels(info)),
            (self.ui.imageModelComboBox, self.logic.imageModels(info)),
            (self.ui.strategyComboBox, sorted(info.get("strategies", {}))),
        ):
            combo.clear()
            combo.addItems(items)
        self.ui.serverStatusLabel.text = (
            f"connected to {info.get('name', '?')} {info.get('version', '')}: "
            f"models {', '.join(info.get('models', {}))}"
        )
        self.updateLabelsText()
        self.updateButtons()
        self.onPollTraining()

    def updateLabelsText(self, *args):
        model = self.ui.clipModelComboBox.currentText
        if not self.logic.info or not model:
            self.ui.labelsLabel.text = "-"
            return
        try:
            labels = model_labels(self.logic.info, model)
        except USSegClipError as e:
            self.ui.labelsLabel.text = str(e)
            return
        self.ui.labelsLabel.text = ", ".join(f"{name} ({value})" for name, value in labels.items())

    # ------------------------------------------------------------------ clip
    def onNextSample(self):
        volume = self.run("Fetching the next clip", self.logic.loadNextSample, self.ui.strategyComboBox.currentText)
        if volume is not None:
            self._parameterNode.inputVolume = volume
            self.onInputVolumeChanged(volume)

    def onUploadClip(self):
        image_id = self.run("Sending the clip", self.logic.uploadClip, self._parameterNode.inputVolume)
        if image_id:
            self.ui.imageIdLabel.text = image_id

    def onInputVolumeChanged(self, volume=None):
        if volume is None and self._parameterNode:
            volume = self._parameterNode.inputVolume
        image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE) if volume else None
        self.ui.imageIdLabel.text = image_id or "- (not on the server)"
        self.observeFrames(volume)
        self.updateButtons()

    # ------------------------------------------------------------------ frames
    def observeFrames(self, volume):
        """Keep the frame slider in step with the red slice view (volume) or the sequence browser (Sequence)."""
        if self._sliceNode is not None:
            self.removeObserver(self._sliceNode, vtk.vtkCommand.ModifiedEvent, self.onViewsChanged)
            self._sliceNode = None
        if self._browser is not None:
            self.removeObserver(self._browser, vtk.vtkCommand.ModifiedEvent, self.onViewsChanged)
            self._browser = None
        if volume is None or volume.GetImageData() is None:
            self.ui.frameSliderWidget.maximum = 0
            return
        self._browser = self.logic.browserForVolume(volume)
        if self._browser is not None:
            self.ui.frameSliderWidget.maximum = max(0, self._browser.GetNumberOfItems() - 1)
            self.addObserver(self._browser, vtk.vtkCommand.ModifiedEvent, self.onViewsChanged)
        else:
            self.ui.frameSliderWidget.maximum = max(0, volume.GetImageData().GetDimensions()[2] - 1)  # frames on k
            slicer.util.setSliceViewerLayers(background=volume, fit=True)
            self._sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
            self._sliceNode.RotateToVolumePlane(volume)
            self.addObserver(self._sliceNode, vtk.vtkCommand.ModifiedEvent, self.onViewsChanged)
        self.onViewsChanged()

    def onViewsChanged(self, caller=None, event=None):
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if volume is None or self._updatingFrame:
            return
        frame = self.logic.currentFrame(volume, self._sliceNode)
        if frame is not None:
            self._updatingFrame = True
            self.ui.frameSliderWidget.value = frame
            self._updatingFrame = False

    def onFrameSliderChanged(self, value):
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if volume is None or self._updatingFrame:
            return
        self._updatingFrame = True
        try:
            self.logic.showFrame(volume, int(round(value)))
        except USSegClipError as e:
            self.showMessage(str(e), error=True)
        finally:
            self._updatingFrame = False

    # ------------------------------------------------------------------ segment, edit, submit
    def _progress(self, done, total):
        self.ui.progressBar.maximum = total
        self.ui.progressBar.value = done
        self.ui.progressBar.format = f"{done} / {total} frames"
        slicer.app.processEvents()

    def onSegmentClip(self):
        p = self._parameterNode
        seg = self.run(
            "Segmenting every frame",
            self.logic.segmentClip,
            p.inputVolume,
            self.ui.clipModelComboBox.currentText,
            p.segmentation,
            p.chunkFrames or None,
            self._progress,
        )
        if seg is not None:
            p.segmentation = seg
            self.updateButtons()

    def onSegmentFrame(self):
        p = self._parameterNode
        seg = self.run(
            "Segmenting this frame",
            self.logic.segmentFrame,
            p.inputVolume,
            self.ui.imageModelComboBox.currentText,
            int(self.ui.frameSliderWidget.value),
            p.segmentation,
            self.ui.clipModelComboBox.currentText,
        )
        if seg is not None:
            p.segmentation = seg
            self.updateButtons()

    def onEdit(self):
        p = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(p.segmentation)
        if p.inputVolume is not None:
            setSource = getattr(editor, "setSourceVolumeNode", None) or editor.setMasterVolumeNode  # < 5.4
            setSource(p.inputVolume)

    def onSubmit(self):
        p = self._parameterNode
        result = self.run(
            "Submitting the clip label", self.logic.submitLabel, p.inputVolume, p.segmentation,
            self.ui.clipModelComboBox.currentText,
        )
        if result is not None:
            self.ui.imageIdLabel.text = result.get("image", "")
            self.onPollTraining()

    # ------------------------------------------------------------------ training
    def onTrain(self):
        state = self.run("Starting training", self.logic.startTraining, self.ui.clipModelComboBox.currentText,
                         self._parameterNode.maxEpochs)
        if state is not None:
            self.showTraining(state)
            self.trainingTimer.start()

    def onStopTraining(self):
        self.run("Stopping training", self.logic.stopTraining)
        self.onPollTraining()

    def onPollTraining(self):
        if self.logic.client is None:
            return
        try:
            state = self.logic.pollTraining(self.ui.clipModelComboBox.currentText)
        except USSegClipError as e:
            self.ui.trainingStatusLabel.text = f"cannot read training status: {e}"
            self.trainingTimer.stop()
            return
        if state is not None:
            self.showTraining(state)
            if state.running:
                self.trainingTimer.start()
            else:
                self.trainingTimer.stop()

    def showTraining(self, state):
        self.ui.trainingStatusLabel.text = state.summary()
        checksum = (state.checksum or "none")[:12]
        live = " — NEW MODEL LIVE" if state.new_model_live else ""
        self.ui.modelVersionLabel.text = f"weights {checksum}{live}"


#
# Logic
#
class USSegClipLogic(ScriptedLoadableModuleLogic):
    """Slicer-side work: nodes ↔ :class:`USSegClipLib.Clip`, segmentations ↔ labelmaps; the server through Lib.

    Args:
        client: an existing :class:`MonaiLabelClient` (tests); normally made by :meth:`connect`.
    """

    def __init__(self, client: Optional[MonaiLabelClient] = None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.client = client
        self.info = None
        self.monitors = {}

    def getParameterNode(self):
        return USSegClipParameterNode(super().getParameterNode())

    @staticmethod
    def ensurePackages(install=False):
        """Import the Python packages Lib needs; install the missing ones with pip when ``install``."""
        missing = []
        for module, package in REQUIRED_PACKAGES.items():
            try:
                __import__(module)
            except ImportError:
                missing.append(package)
        if missing and install:
            slicer.util.pip_install(" ".join(missing))
            return USSegClipLogic.ensurePackages(install=False)
        if missing:
            names = " ".join(missing)
            raise USSegClipError(f"missing Python packages {missing}: run slicer.util.pip_install('{names}')")
        return []

    # ------------------------------------------------------------------ server
    def connect(self, url, token=""):
        """Open a client for ``url`` and read ``/info/``; returns the info dict."""
        try:
            self.ensurePackages(install=False)
        except USSegClipError:
            if not slicer.util.confirmOkCancelDisplay("USSegClip needs nibabel, pynrrd and slicerio. Install now?"):
                raise
            self.ensurePackages(install=True)
        client = MonaiLabelClient(url, token=token or None)
        self.info = client.info()
        self.client = client
        self.monitors = {}
        return self.info

    def requireClient(self):
        if self.client is None:
            raise USSegClipError("not connected: enter the server URL and press Connect")
        return self.client

    def clipModels(self, info):
        """Models that take a cine (dimension 3), dsanet first."""
        return models_of_dimension(info, 3, "dsanet")

    def imageModels(self, info):
        """Models that take a single image (dimension 2), intrasense first."""
        return models_of_dimension(info, 2, "intrasense")

    # ------------------------------------------------------------------ clips and nodes
    @staticmethod
    def ijkToRas(node):
        m = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(m)
        return slicer.util.arrayFromVTKMatrix(m)

    def browserForVolume(self, volume):
        """The sequence browser whose proxy is ``volume`` (a DICOM cine loaded as a Sequence), or None."""
        if volume is None or not hasattr(slicer.modules, "sequences"):
            return None
        return slicer.modules.sequences.logic().GetFirstBrowserNodeForProxyNode(volume)

    def clipFromVolume(self, volume):
        """:class:`Clip` of a volume node (frames along k) or of a Sequence whose proxy is ``volume``."""
        browser = self.browserForVolume(volume)
        if browser is not None:
            return self.clipFromSequence(browser, volume)
        voxels = kji_to_ijk(to_grey(slicer.util.arrayFromVolume(volume)))
        return Clip(np.array(voxels), self.ijkToRas(volume), 2)

    def clipFromSequence(self, browser, proxy):
        """Stack a Sequence of 2-D frames into (i, j, t); the frame step is 1 along the frame plane's normal."""
        frames = []
        current = browser.GetSelectedItemNumber()
        matrix = None
        try:
            for i in range(browser.GetNumberOfItems()):
                browser.SetSelectedItemNumber(i)
                array = to_grey(slicer.util.arrayFromVolume(proxy))
                if array.shape[0] != 1:
                    raise USSegClipError(f"sequence item {i} is not a 2-D frame (shape {array.shape})")
                frames.append(np.array(kji_to_ijk(array))[:, :, 0])
                if matrix is None:
                    matrix = self.ijkToRas(proxy)
        finally:
            browser.SetSelectedItemNumber(current)
        return stack_frames(frames, matrix)

    def currentFrame(self, volume, sliceNode=None):
        """Frame shown now: the browser's item, or RAS→IJK of the red view's centre (never its slice offset)."""
        browser = self.browserForVolume(volume)
        if browser is not None:
            return browser.GetSelectedItemNumber()
        if sliceNode is None:
            return None
        centre = slicer.util.arrayFromVTKMatrix(sliceNode.GetSliceToRAS())[:3, 3]
        clip_shape = volume.GetImageData().GetDimensions()  # (i, j, k)
        try:
            return frame_index_from_ras(self.ijkToRas(volume), centre, 2, clip_shape[2])
        except USSegClipError:
            return None

    def showFrame(self, volume, frame):
        """Bring ``frame`` into the views: select it in the browser, or centre the slice views on it."""
        browser = self.browserForVolume(volume)
        if browser is not None:
            browser.SetSelectedItemNumber(frame)
            return
        ras = ras_of_frame(self.ijkToRas(volume), volume.GetImageData().GetDimensions(), frame, 2)
        slicer.modules.markups.logic().JumpSlicesToLocation(float(ras[0]), float(ras[1]), float(ras[2]), True)

    def dicomFile(self, volume):
        """The DICOM file a volume was loaded from through the DICOM module (one multi-frame instance), or None."""
        uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
        if len(uids) != 1 or slicer.dicomDatabase is None:
            return None
        path = slicer.dicomDatabase.fileForInstance(uids[0])
        return path if path and os.path.isfile(path) else None

    # ------------------------------------------------------------------ segmentation nodes
    def ensureSegmentation(self, volume, segmentation, labels):
        """A segmentation on ``volume``'s grid holding one segment per server label (names from the server)."""
        if segmentation is None:
            segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} label")
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        if segmentation.GetDisplayNode() is None:
            segmentation.CreateDefaultDisplayNodes()
        colors = ((0.95, 0.35, 0.2), (0.2, 0.75, 0.3), (0.25, 0.5, 0.95), (0.95, 0.85, 0.2))
        seg = segmentation.GetSegmentation()
        for index, (name, _value) in enumerate(sorted(labels.items(), key=lambda kv: kv[1])):
            if not seg.GetSegmentIdBySegmentName(name):
                segment_id = seg.AddEmptySegment(name, name)
                seg.GetSegment(segment_id).SetColor(*colors[index % len(colors)])
        return segmentation

    def writeLabel(self, volume, segmentation, label, labels, frame=None):
        """Paint a label clip (IJK order, values = server labels) into the segments; only ``frame`` when given."""
        browser = self.browserForVolume(volume)
        frames = range(label.num_frames) if frame is None else [frame]
        if browser is not None:
            return self._writeSequenceLabel(browser, volume, segmentation, label, labels, frames)
        segmentation = self.ensureSegmentation(volume, segmentation, labels)
        seg = segmentation.GetSegmentation()
        for name, value in labels.items():
            segment_id = seg.GetSegmentIdBySegmentName(name)
            mask = self._segmentMask(segmentation, segment_id, volume, label.voxels.shape).astype(np.uint8)
            for t in frames:
                mask[:, :, t] = label.voxels[:, :, t] == value
            slicer.util.updateSegmentBinaryLabelmapFromArray(
                np.ascontiguousarray(ijk_to_kji(mask.astype(np.uint8))), segmentation, segment_id, volume
            )
        return segmentation

    def _writeSequenceLabel(self, browser, proxy, segmentation, label, labels, frames):
        """Per-frame segmentations in a sequence synchronized with the browser; returns its proxy segmentation."""
        seq_volume = browser.GetSequenceNode(proxy)
        seg_sequence = None
        if segmentation is not None:
            seg_sequence = browser.GetSequenceNode(segmentation)
        if seg_sequence is None:
            seg_sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{proxy.GetName()} labels")
            seg_sequence.SetIndexName(seq_volume.GetIndexName())
            seg_sequence.SetIndexUnit(seq_volume.GetIndexUnit())
            seg_sequence.SetIndexType(seq_volume.GetIndexType())  # browsing requires matching index types
            for i in range(seq_volume.GetNumberOfDataNodes()):
                empty = slicer.vtkMRMLSegmentationNode()
                seg_sequence.SetDataNodeAtValue(empty, seq_volume.GetNthIndexValue(i))
            browser.AddSynchronizedSequenceNode(seg_sequence)
            browser.SetSaveChanges(seg_sequence, True)
            slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        current = browser.GetSelectedItemNumber()
        try:
            for t in frames:
                browser.SetSelectedItemNumber(t)
                frame_seg = browser.GetProxyNode(seg_sequence)
                frame_seg.SetReferenceImageGeometryParameterFromVolumeNode(proxy)
                self.ensureSegmentation(proxy, frame_seg, labels)
                seg = frame_seg.GetSegmentation()
                for name, value in labels.items():
                    mask = (label.voxels[:, :, t : t + 1] == value).astype(np.uint8)
                    slicer.util.updateSegmentBinaryLabelmapFromArray(
                        np.ascontiguousarray(ijk_to_kji(mask)), frame_seg, seg.GetSegmentIdBySegmentName(name), proxy
                    )
        finally:
            browser.SetSelectedItemNumber(current)
        return browser.GetProxyNode(seg_sequence)

    def readLabel(self, volume, segmentation, labels):
        """Every frame's label as one (i, j, t) array with the server's label values."""
        browser = self.browserForVolume(volume)
        if browser is None:
            return compose_labelmap(self._masks(segmentation, volume), labels)
        seg_sequence = browser.GetSequenceNode(segmentation)
        if seg_sequence is None:
            raise USSegClipError("the segmentation is not part of the clip's sequence browser")
        frames = []
        current = browser.GetSelectedItemNumber()
        try:
            for t in range(browser.GetNumberOfItems()):
                browser.SetSelectedItemNumber(t)
                frame_seg = browser.GetProxyNode(seg_sequence)
                frames.append(compose_labelmap(self._masks(frame_seg, volume), labels)[:, :, 0])
        finally:
            browser.SetSelectedItemNumber(current)
        return np.stack(frames, axis=2)

    @staticmethod
    def _segmentMask(segmentation, segment_id, volume, shape):
        """Boolean (i, j, k) mask of a segment on ``volume``'s grid (all False for an empty segment)."""
        kji = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
        if kji is None or kji.size == 0:
            return np.zeros(shape, bool)
        mask = np.array(kji_to_ijk(kji)) > 0
        if mask.shape != tuple(shape):
            raise USSegClipError(f"segment {segment_id!r} is shaped {mask.shape}, the clip {tuple(shape)}")
        return mask

    def _masks(self, segmentation, volume):
        shape = volume.GetImageData().GetDimensions()
        seg = segmentation.GetSegmentation()
        masks = {}
        for i in range(seg.GetNumberOfSegments()):
            segment_id = seg.GetNthSegmentID(i)
            masks[seg.GetSegment(segment_id).GetName()] = self._segmentMask(segmentation, segment_id, volume, shape)
        return masks

    # ------------------------------------------------------------------ server work
    def loadNextSample(self, strategy):
        """Ask the server for the next clip, download and load it; the node remembers its datastore id."""
        client = self.requireClient()
        sample = client.next_sample(strategy)
        if not sample or "id" not in sample:
            raise USSegClipError(f"the server has no clip left to label (strategy {strategy!r})")
        directory = tempfile.mkdtemp(prefix="usseg_")
        path = client.download_image(sample["id"], directory)
        volume = slicer.util.loadVolume(path, {"singleFile": True, "show": True})
        volume.SetAttribute(IMAGE_ID_ATTRIBUTE, sample["id"])
        return volume

    def uploadClip(self, volume):
        """Add the clip to the server's datastore (its DICOM file when known, else NIfTI); returns the image id."""
        if volume is None:
            raise USSegClipError("select a clip first")
        client = self.requireClient()
        path = self.dicomFile(volume)
        if path is None:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", volume.GetName()).strip("._") or "clip"
            path = os.path.join(tempfile.mkdtemp(prefix="usseg_"), f"{name}.nii.gz")
            write_nifti(self.clipFromVolume(volume), path)
        image_id = client.upload_image(path)
        volume.SetAttribute(IMAGE_ID_ATTRIBUTE, image_id)
        return image_id

    def segmentClip(self, volume, model, segmentation=None, chunkFrames=None, progress=None):
        """Run the cine model on every frame and show the result in a segmentation (per frame, following views)."""
        if volume is None:
            raise USSegClipError("select a clip first")
        client = self.requireClient()
        labels = model_labels(self.info or client.info(), model)
        clip = self.clipFromVolume(volume)
        image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE)
        if image_id and not chunkFrames:
            if progress:
                progress(0, clip.num_frames)
            server_label = infer_image(client, model, image_id)
            volume.SetAttribute(SERVER_MATRIX_ATTRIBUTE, matrix_to_text(server_label.ijk_to_ras))
            label = fit_label_to_clip(server_label, clip)
            if progress:
                progress(clip.num_frames, clip.num_frames)
        else:
            label = infer_clip(client, model, clip, chunk_frames=chunkFrames, progress=progress)
        return self.writeLabel(volume, segmentation, label, labels)

    def segmentFrame(self, volume, model, frame, segmentation=None, clipModel=None):
        """Run the image model on one frame and paint that frame of the segmentation.

        With ``clipModel`` the result is painted into the clip model's segments (see ``rename_labels``), so one
        segmentation holds the clip's label whichever model produced a frame.
        """
        if volume is None:
            raise USSegClipError("select a clip first")
        if not model:
            raise USSegClipError("the server offers no single-image model")
        client = self.requireClient()
        info = self.info or client.info()
        labels = model_labels(info, model)
        clip = self.clipFromVolume(volume)
        one = infer_frame(client, model, clip, frame)
        full = np.zeros(clip.voxels.shape, np.uint8)
        full[:, :, frame] = one.voxels[:, :, 0]
        if clipModel:
            clip_labels = model_labels(info, clipModel)
            full, labels = rename_labels(full, labels, clip_labels), clip_labels
        return self.writeLabel(volume, segmentation, Clip(full, clip.ijk_to_ras, 2), labels, frame=frame)

    def submitLabel(self, volume, segmentation, model):
        """Save every frame's label on the server (uploading the clip first when it is not there yet)."""
        if volume is None or segmentation is None:
            raise USSegClipError("select the clip and its segmentation first")
        client = self.requireClient()
        labels = model_labels(self.info or client.info(), model)
        label = self.readLabel(volume, segmentation, labels)
        image_id = volume.GetAttribute(IMAGE_ID_ATTRIBUTE) or self.uploadClip(volume)
        matrix_text = volume.GetAttribute(SERVER_MATRIX_ATTRIBUTE)
        matrix = matrix_from_text(matrix_text) if matrix_text else self.clipFromVolume(volume).ijk_to_ras
        directory = tempfile.mkdtemp(prefix="usseg_")
        path = write_nifti(Clip(label.astype(np.uint8), matrix, 2), os.path.join(directory, f"{image_id}.nii.gz"))
        write_seg_nrrd(os.path.join(directory, f"{image_id}.seg.nrrd"), Clip(label, matrix, 2), labels)  # local copy
        result = client.save_label(image_id, path, params={"label_names": labels})
        logging.info("label of %s saved on the server (%s); local copy in %s", image_id, result, directory)
        return result

    def loadLabelFile(self, path, volume, model):
        """Load a label file (NIfTI/NRRD/PNG) onto ``volume`` as a segmentation (for labels saved elsewhere)."""
        labels = model_labels(self.info or self.requireClient().info(), model)
        label = fit_label_to_clip(read_volume(path), self.clipFromVolume(volume))
        return self.writeLabel(volume, None, label, labels)

    # ------------------------------------------------------------------ training
    def monitor(self, model):
        if model not in self.monitors:
            self.monitors[model] = TrainingMonitor(self.requireClient(), model)
        return self.monitors[model]

    def startTraining(self, model, maxEpochs):
        if not model:
            raise USSegClipError("choose a model to train")
        return self.monitor(model).start({"max_epochs": int(maxEpochs)})

    def pollTraining(self, model):
        return self.monitor(model).poll() if model else None

    def stopTraining(self):
        return self.requireClient().stop_training()


#
# Test (runs inside Slicer: "Reload and Test" or ctest)
#
class USSegClipTest(ScriptedLoadableModuleTest):
    """Geometry and segmentation round trips through real Slicer nodes (no server needed)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_volume_geometry_roundtrip()
        self.setUp()
        self.test_label_roundtrip_and_frame_mapping()

    def _volume(self):
        rng = np.random.default_rng(0)
        kji = rng.integers(0, 255, size=(6, 20, 24), dtype=np.uint8)  # 6 frames of 24 × 20
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "clip")
        slicer.util.updateVolumeFromArray(volume, kji)
        angle = np.deg2rad(30)
        direction = np.array([[np.cos(angle), 0, np.sin(angle)], [0, -1, 0], [np.sin(angle), 0, -np.cos(angle)]])
        matrix = np.eye(4)
        matrix[:3, :3] = direction * [0.3, 0.4, 1.0]
        matrix[:3, 3] = [12.0, -7.0, 30.0]
        volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix))
        return volume, kji, matrix

    def test_volume_geometry_roundtrip(self):
        """A clip written by Lib as NIfTI loads back in Slicer with the same voxels and IJK→RAS."""
        self.delayDisplay("clip geometry through NIfTI")
        volume, kji, matrix = self._volume()
        logic = USSegClipLogic()
        clip = logic.clipFromVolume(volume)
        self.assertEqual(clip.voxels.shape, (24, 20, 6))
        np.testing.assert_allclose(clip.ijk_to_ras, matrix, atol=1e-12)
        path = write_nifti(clip, os.path.join(tempfile.mkdtemp(), "clip.nii.gz"))
        loaded = slicer.util.loadVolume(path, {"show": False})
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), kji)
        np.testing.assert_allclose(logic.ijkToRas(loaded), matrix, atol=1e-5)

    def test_label_roundtrip_and_frame_mapping(self):
        """Labels painted per frame read back equal; .seg.nrrd from Lib opens with the server's segment names."""
        self.delayDisplay("labels per frame and .seg.nrrd")
        volume, kji, matrix = self._volume()
        logic = USSegClipLogic()
        labels = {"lesion": 1, "wall": 2}
        label = np.zeros((24, 20, 6), np.uint8)
        for t in range(6):
            label[2 + t : 8 + t, 3:9, t] = 1
            label[10:14, 12 : 14 + t, t] = 2
        seg = logic.writeLabel(volume, None, Clip(label, matrix, 2), labels)
        np.testing.assert_array_equal(logic.readLabel(volume, seg, labels), label)
        for t in range(6):
            centre = ras_of_frame(matrix, (24, 20, 6), t, 2)
            self.assertEqual(frame_index_from_ras(logic.ijkToRas(volume), centre, 2, 6), t)
        path = write_seg_nrrd(os.path.join(tempfile.mkdtemp(), "clip.seg.nrrd"), Clip(label, matrix, 2), labels)
        loaded = slicer.util.loadSegmentation(path)
        names = [loaded.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(loaded.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(sorted(names), ["lesion", "wall"])
        np.testing.assert_array_equal(logic.readLabel(volume, loaded, labels), label)
        self.delayDisplay("USSegClip tests passed")
