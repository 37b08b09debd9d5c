"""In-Slicer tests of USSegClip that go beyond the module's own self-test.

Run inside 3D Slicer (Python console)::

    import USSegClipModuleTest; USSegClipModuleTest.USSegClipModuleTest().runTest()

or through ctest in an extension build tree. The server part runs when the environment variable
``USSEG_SERVER_URL`` names a running usseg MONAI Label server (``scripts/serve``); otherwise it is skipped and
says so.
"""

import os
import tempfile

import numpy as np
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest
from USSegClip import IMAGE_ID_ATTRIBUTE, USSegClipLogic
from USSegClipLib import Clip, model_labels, read_volume


class USSegClipModuleTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_sequence_clip_and_labels()
        self.setUp()
        self.test_server_flow()

    def _sequence(self, frames=5, size=(16, 12)):
        """A Sequence of 2-D frames (as Slicer's DICOM module loads a cine) with an oblique frame geometry."""
        rng = np.random.default_rng(3)
        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
        matrix = np.eye(4)
        matrix[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]) * [0.2, 0.25, 1.0]
        matrix[:3, 3] = [5.0, 6.0, -2.0]
        arrays = []
        for t in range(frames):
            kji = rng.integers(0, 255, size=(1, size[1], size[0]), dtype=np.uint8)
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"frame{t}")
            slicer.util.updateVolumeFromArray(node, kji)
            node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix))
            sequence.SetDataNodeAtValue(node, str(t))
            slicer.mrmlScene.RemoveNode(node)
            arrays.append(kji[0].T)
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        return browser, browser.GetProxyNode(sequence), np.stack(arrays, axis=2), matrix

    def test_sequence_clip_and_labels(self):
        self.delayDisplay("Sequence clip: stacking frames and per-frame labels following the browser")
        browser, proxy, expected, matrix = self._sequence()
        logic = USSegClipLogic()
        self.assertIs(logic.browserForVolume(proxy), browser)
        clip = logic.clipFromVolume(proxy)
        np.testing.assert_array_equal(clip.voxels, expected)
        np.testing.assert_allclose(clip.ijk_to_ras[:3, :2], matrix[:3, :2], atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(clip.ijk_to_ras[:3, 2]), 1.0)  # frame step: 1 along the normal
        labels = {"lesion": 1}
        label = np.zeros(expected.shape, np.uint8)
        for t in range(label.shape[2]):
            label[t : t + 4, 2:6, t] = 1
        seg = logic.writeLabel(proxy, None, Clip(label, clip.ijk_to_ras, 2), labels)
        np.testing.assert_array_equal(logic.readLabel(proxy, seg, labels), label)
        for t in range(label.shape[2]):
            logic.showFrame(proxy, t)
            self.assertEqual(logic.currentFrame(proxy), t)
            shown = slicer.util.arrayFromSegmentBinaryLabelmap(browser.GetProxyNode(browser.GetSequenceNode(seg)),
                                                              "lesion", proxy)
            np.testing.assert_array_equal(shown[0].T > 0, label[:, :, t] > 0)

    def test_server_flow(self):
        url = os.environ.get("USSEG_SERVER_URL")
        if not url:
            self.skipTest("USSEG_SERVER_URL is not set: no usseg MONAI Label server to test against")
        self.delayDisplay(f"Server flow against {url}")
        logic = USSegClipLogic()
        info = logic.connect(url)
        model = logic.clipModels(info)[0]
        labels = model_labels(info, model)
        volume = logic.loadNextSample(sorted(info["strategies"])[0])
        self.assertTrue(volume.GetAttribute(IMAGE_ID_ATTRIBUTE))
        seg = logic.segmentClip(volume, model, chunkFrames=None)
        label = logic.readLabel(volume, seg, labels)
        clip = logic.clipFromVolume(volume)
        self.assertEqual(label.shape, clip.voxels.shape)
        result = logic.submitLabel(volume, seg, model)
        self.assertEqual(result["image"], volume.GetAttribute(IMAGE_ID_ATTRIBUTE))
        saved = read_volume(logic.client.download_label(result["label"], "final", tempfile.mkdtemp()))
        np.testing.assert_array_equal(saved.voxels, label)
        self.assertEqual(saved.voxels.shape, clip.voxels.shape)
        self.delayDisplay("server flow passed")
