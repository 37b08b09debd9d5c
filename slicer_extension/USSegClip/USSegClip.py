"""USSegClip: segment ultrasound cine clips against a MONAI Label server, frame by frame, inside 3D Slicer.

Widget (Qt panel, parameter node) → ``USSegClipLogic`` (MRML nodes ↔ numpy; no Qt, also runs on the ``slicer-core``
wheel) → ``USSegClipLib`` (server and file formats; plain Python). Nothing in this file talks HTTP.
"""

import html
import logging
import threading
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from USSegClipLib import USSegClipError, labels_summary, refine_status
from USSegClipLogic import IMAGE_ID_ATTRIBUTE, USSegClipLogic, segmentation_edited_event, selftest


class USSegClip(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "US Seg Clip"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Sequences", "Segmentations"]
        self.parent.contributors = ["usseg contributors"]
        self.parent.helpText = (
            "Segment every frame of an ultrasound cine with DSANet (or one frame with IntraSense-Net) on a MONAI "
            "Label server, correct frames with the Segment Editor, refine the clip from your corrections, submit the "
            "clip label with the frames you reviewed and follow retraining. See slicer_extension/README.md."
        )
        self.parent.acknowledgementText = "Built on MONAI Label and 3D Slicer."


@parameterNodeWrapper
class USSegClipParameterNode:
    """Scene-saved settings (the auth token is deliberately not one of them)."""

    serverUrl: str = "http://127.0.0.1:8000"
    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    chunkFrames: Annotated[int, WithinRange(0, 10000)] = 0
    maxEpochs: Annotated[int, WithinRange(1, 10000)] = 2


class USSegClipWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = self._parameterNodeGuiTag = self._sliceNode = self._browser = None
        self._observedSegmentation = self._cancelRefine = None
        self._updatingFrame = False
        self.trainingTimer = qt.QTimer()
        self.trainingTimer.setInterval(3000)
        self.trainingTimer.timeout.connect(self.onPollTraining)
        self.reviewTimer = qt.QTimer()  # edits fire many events: count reviewed frames once they settle
        self.reviewTimer.setSingleShot(True)
        self.reviewTimer.setInterval(700)
        self.reviewTimer.timeout.connect(self.updateReviewed)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/USSegClip.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = USSegClipLogic(slicer.mrmlScene, sequencesLogic=slicer.modules.sequences.logic())
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for button, handler in (
            (self.ui.connectButton, self.onConnect), (self.ui.nextSampleButton, self.onNextSample),
            (self.ui.uploadClipButton, self.onUploadClip), (self.ui.runClipModelButton, self.onSegmentClip),
            (self.ui.runImageModelButton, self.onSegmentFrame), (self.ui.editButton, self.onEdit),
            (self.ui.submitButton, self.onSubmit), (self.ui.trainButton, self.onTrain),
            (self.ui.stopTrainingButton, self.onStopTraining), (self.ui.refineButton, self.onRefine),
            (self.ui.markReviewedButton, self.onMarkReviewed), (self.ui.markAllReviewedButton, self.onMarkAllReviewed),
        ):
            button.connect("clicked(bool)", handler)
        self.ui.clipModelComboBox.connect("currentIndexChanged(int)", self.updateLabelsText)
        self.ui.frameSliderWidget.connect("valueChanged(double)", self.onFrameSliderChanged)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputVolumeChanged)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.observeSegmentation)
        self.initializeParameterNode()

    def cleanup(self):
        self.trainingTimer.stop()
        self.reviewTimer.stop()
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
        self.setParameterNode(USSegClipParameterNode(self.logic.parameterNode()))

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
        except Exception as e:
            qt.QApplication.restoreOverrideCursor()
            if not isinstance(e, (USSegClipError, ValueError)):  # not the user's input or the server's answer
                logging.exception("%s failed", title)  # keep the traceback in the log
            self.showMessage(f"{title} failed: {e}", error=True)
            slicer.util.errorDisplay(f"{title} failed:\n{e}")
            return None
        qt.QApplication.restoreOverrideCursor()
        self.showMessage(f"{title}: done")
        return result

    def updateButtons(self, caller=None, event=None):
        connected = self.logic.client is not None
        p = self._parameterNode
        volume, seg = (p.inputVolume, p.segmentation) if p else (None, None)
        self.ui.nextSampleButton.enabled = self.ui.trainButton.enabled = self.ui.stopTrainingButton.enabled = connected
        self.ui.uploadClipButton.enabled = self.ui.runClipModelButton.enabled = connected and volume is not None
        self.ui.runImageModelButton.enabled = connected and volume is not None
        self.ui.submitButton.enabled = self.ui.refineButton.enabled = connected and None not in (volume, seg)
        self.ui.editButton.enabled = seg is not None
        self.ui.markReviewedButton.enabled = self.ui.markAllReviewedButton.enabled = None not in (volume, seg)
        self.observeSegmentation(seg)

    # ------------------------------------------------------------------ server
    def onConnect(self):
        missing = self.logic.missingPackages()
        if missing and slicer.util.confirmOkCancelDisplay(f"USSegClip needs {', '.join(missing)}. Install now?"):
            self.run("Installing Python packages", self.logic.ensurePackages, True)
        info = self.run("Connecting", self.logic.connect, self.ui.serverUrlLineEdit.text, self.ui.tokenLineEdit.text)
        self.ui.serverStatusLabel.text = "not connected"
        if info is not None:
            for combo, items in (
                (self.ui.clipModelComboBox, self.logic.clipModels(info)),
                (self.ui.imageModelComboBox, self.logic.imageModels(info)),
                (self.ui.strategyComboBox, sorted(info.get("strategies", {}))),
            ):
                combo.clear()
                combo.addItems(items)
            self.ui.serverStatusLabel.text = (f"connected to {info.get('name', '?')} {info.get('version', '')}: "
                                              f"models {', '.join(info.get('models', {}))}")
            self.updateLabelsText()
            self.onPollTraining()
        self.updateButtons()

    def updateLabelsText(self, *args):
        self.ui.labelsLabel.text = labels_summary(self.logic.info, self.ui.clipModelComboBox.currentText)

    # ------------------------------------------------------------------ clip and frames
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
        self.updateReviewed()

    def observeFrames(self, volume):
        """Keep the frame slider in step with the red slice view (volume) or the sequence browser (Sequence)."""
        for node in (self._sliceNode, self._browser):
            if node is not None:
                self.removeObserver(node, vtk.vtkCommand.ModifiedEvent, self.onViewsChanged)
        self._sliceNode = self._browser = None
        if volume is None or volume.GetImageData() is None:
            self.ui.frameSliderWidget.maximum = 0
            return
        self.ui.frameSliderWidget.maximum = max(0, self.logic.numberOfFrames(volume) - 1)
        self._browser = self.logic.browserForVolume(volume)
        if self._browser is None:
            slicer.util.setSliceViewerLayers(background=volume, fit=True)
            self._sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
            self._sliceNode.RotateToVolumePlane(volume)
        self.addObserver(self._browser or self._sliceNode, vtk.vtkCommand.ModifiedEvent, self.onViewsChanged)
        self.onViewsChanged()

    def observeSegmentation(self, segmentation=None):
        """Recount reviewed frames shortly after the user edits the segmentation."""
        if segmentation is self._observedSegmentation:
            return
        edited = segmentation_edited_event()
        if self._observedSegmentation is not None:
            self.removeObserver(self._observedSegmentation, edited, self.onSegmentationEdited)
        self._observedSegmentation = segmentation
        if segmentation is not None:
            self.addObserver(segmentation, edited, self.onSegmentationEdited)
        self.updateReviewed()

    def onSegmentationEdited(self, caller=None, event=None):
        self.reviewTimer.start()

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

    # ------------------------------------------------------------------ segment, review, refine, submit
    def _progress(self, done, total):
        self.ui.progressBar.maximum, self.ui.progressBar.value = total, done
        self.ui.progressBar.format = f"{done} / {total} frames"
        slicer.app.processEvents()

    def _setSegmentation(self, seg):
        if seg is not None:
            self._parameterNode.segmentation = seg
            self.updateButtons()
            self.updateReviewed()

    def onSegmentClip(self):
        p = self._parameterNode
        self._setSegmentation(self.run("Segmenting every frame", self.logic.segmentClip, p.inputVolume,
                                       self.ui.clipModelComboBox.currentText, p.segmentation, p.chunkFrames or None,
                                       self._progress))

    def onSegmentFrame(self):
        p = self._parameterNode
        self._setSegmentation(self.run("Segmenting this frame", self.logic.segmentFrame, p.inputVolume,
                                       self.ui.imageModelComboBox.currentText, int(self.ui.frameSliderWidget.value),
                                       p.segmentation, self.ui.clipModelComboBox.currentText))

    def onEdit(self):
        p = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(p.segmentation)
        if p.inputVolume is not None:
            setSource = getattr(editor, "setSourceVolumeNode", None) or editor.setMasterVolumeNode  # < 5.4
            setSource(p.inputVolume)

    def updateReviewed(self):
        p = self._parameterNode
        try:
            text = self.logic.reviewSummary(p.inputVolume, p.segmentation) if p else "-"
        except USSegClipError as e:
            text = str(e)
        self.ui.reviewedLabel.text = text

    def onMarkReviewed(self):
        p = self._parameterNode
        self.run("Marking the frame reviewed", self.logic.markFrameReviewed, p.inputVolume, p.segmentation,
                 int(self.ui.frameSliderWidget.value))
        self.updateReviewed()

    def onMarkAllReviewed(self):
        self.run("Marking every frame reviewed", self.logic.markAllFramesReviewed, self._parameterNode.inputVolume,
                 self._parameterNode.segmentation)
        self.updateReviewed()

    def onRefine(self):
        if self._cancelRefine is not None:  # the button reads "Cancel refinement" while a refinement runs
            self._cancelRefine.set()
            return
        p = self._parameterNode
        self._cancelRefine, propagated = threading.Event(), []
        self.ui.refineButton.text = "Cancel refinement"

        def progress(seconds, budget, phase):
            self.ui.progressBar.maximum = int(budget * 10) if budget else 0  # 0: busy indicator
            self.ui.progressBar.value = min(int(seconds * 10), self.ui.progressBar.maximum)
            self.ui.progressBar.format = refine_status(phase, seconds, bool(propagated))
            slicer.app.processEvents()  # lets the user press Cancel (and go on editing)

        def onPropagated(seg):  # the fast answer is in the segmentation; the refined one follows
            propagated.append(seg)
            self._setSegmentation(seg)
            self.showMessage("Propagated from your edits — refining…")

        try:
            seg = self.run("Refining from your edits", self.logic.refineClip, p.inputVolume, p.segmentation,
                           self.ui.clipModelComboBox.currentText, progress, self._cancelRefine, None, onPropagated)
            if seg is None and self._cancelRefine.is_set():
                kept = "the propagated label is shown" if propagated else "the segmentation is unchanged"
                self.showMessage(f"Refinement cancelled; {kept}")
        finally:
            self._cancelRefine = None
            self.ui.refineButton.text = "Refine from my edits"
        self.updateReviewed()

    def onSubmit(self):
        p = self._parameterNode
        result = self.run("Submitting the clip label", self.logic.submitLabel, p.inputVolume, p.segmentation,
                          self.ui.clipModelComboBox.currentText)
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
        self.ui.modelVersionLabel.text = state.weights_summary()


class USSegClipTest(ScriptedLoadableModuleTest):
    """The server-free steps of tests/test_slicer_mrml.py on Slicer's own scene ("Reload and Test"): the same
    ``USSegClipLogic.selftest`` checks that CI runs on slicer-core. Server steps: Testing/Python/."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.test_self_checks()

    def test_self_checks(self):
        for description, check in selftest.CHECKS:
            self.setUp()
            self.delayDisplay(description)
            check(slicer.mrmlScene, slicer.modules.sequences.logic())
        self.delayDisplay("USSegClip tests passed")
