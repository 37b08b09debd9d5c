"""What the Slicer tests against a real MONAI Label server need besides the server itself
(``test_slicer_server_flow.py``, ``test_slicer_mrml_server.py``): the real-server helper ``tests/server_utils.py``
and ``pydicom``.

Import them from here at module level (``from slicer_server_support import pydicom, server_utils``): importing this
module skips the calling test module, with the reason, when either is missing.
"""

from __future__ import annotations

import pytest

__all__ = ["pydicom", "server_utils"]

server_utils = pytest.importorskip("server_utils", reason="tests/server_utils.py (real server helper) not present")
pydicom = pytest.importorskip("pydicom")
