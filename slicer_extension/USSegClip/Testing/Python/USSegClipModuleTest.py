"""In-Slicer tests of USSegClip that need a server (the module's own self-test covers the rest).

Run inside 3D Slicer (Python console)::

    import USSegClipModuleTest; USSegClipModuleTest.USSegClipModuleTest().runTest()

or through ctest in an extension build tree. It runs when the environment variable ``USSEG_SERVER_URL`` names a
running usseg MONAI Label server (``scripts/serve``); otherwise it is skipped and says so. The steps are those of
tests/test_slicer_mrml_server.py: next clip, segment (drawn where the server's label is), edit a frame, submit
with the reviewed frame, refine from the edit.
"""

import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest
from USSegClipLogic import selftest


class USSegClipModuleTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_server_flow()

    def test_server_flow(self):
        url = os.environ.get("USSEG_SERVER_URL")
        if not url:
            self.skipTest("USSEG_SERVER_URL is not set: no usseg MONAI Label server to test against")
        self.delayDisplay(f"Server flow against {url}")
        selftest.check_server_flow(slicer.mrmlScene, slicer.modules.sequences.logic(), url)
        self.delayDisplay("server flow passed")
