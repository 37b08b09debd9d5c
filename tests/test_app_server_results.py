"""A real server and MONAI Label's own client on one machine (a workstation running Slicer and the server).

MONAI Label's ``POST /infer/{model}`` answers with the result file under its base name and then removes the file in
a background task; ``MONAILabelClient.infer`` saves the answer as ``<system temp folder>/<that name>``. The server
must therefore never write its results in the system temp folder: its clean-up would remove that path, which is
then the client's saved answer (:mod:`monailabel_app.lib.compat.result_files`). The server is the one of every
``test_app_server*.py`` module (:mod:`app_server_fixtures`).
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import pytest
from app_server_fixtures import MONAILabelClient, load

pytestmark = [pytest.mark.server, pytest.mark.slow]

_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)


class FolderEvents:
    """Names created and removed in one folder since the watch began (Linux inotify), read without blocking.

    Unlike polling, a file that exists for only a moment is seen too.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip(f"inotify unavailable: {os.strerror(ctypes.get_errno())}")
        mask = _IN_CREATE | _IN_DELETE | _IN_MOVED_TO | _IN_MOVED_FROM
        if libc.inotify_add_watch(self.fd, os.fsencode(folder), mask) < 0:
            errno = ctypes.get_errno()
            os.close(self.fd)
            pytest.skip(f"cannot watch {folder}: {os.strerror(errno)}")
        self.events: list[tuple[str, str]] = []  # (created | removed, name), oldest first

    def read(self) -> list[tuple[str, str]]:
        """All events so far (this call adds the ones not read yet)."""
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return list(self.events)
            offset = 0
            while offset < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                kind = "created" if mask & (_IN_CREATE | _IN_MOVED_TO) else "removed"
                self.events.append((kind, os.fsdecode(name)))

    def close(self) -> None:
        os.close(self.fd)


def _wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches the temp folder with Linux inotify")
def test_answer_saved_by_monai_label_client_survives_the_servers_clean_up(server, image_png, monkeypatch):
    """The client saves in the system temp folder (its default); the server's clean-up must not touch that file.

    Deterministic part: the temp folder is watched from before the request until the client starts saving, so a
    result file the server put there under the name it sent is seen whatever the timing. Whether the client's copy
    is then lost depends on which of the two ran first (the flaky ``FileNotFoundError`` of
    ``test_refine_through_monai_label_client``); that is checked once the server has cleaned up.
    """
    from monailabel.client.client import MONAILabelUtils

    temp = Path(tempfile.gettempdir())
    client = MONAILabelClient(server.url)  # no tmpdir: the system temp folder, which the server process shares
    watch = FolderEvents(temp)
    before_saving: list[tuple[str, str]] = []
    original_save = MONAILabelUtils.save_result

    def save_result(files, tmpdir):  # the client's own save, after noting what the temp folder saw until now
        before_saving.extend(watch.read())
        return original_save(files, tmpdir)

    monkeypatch.setattr(MONAILabelUtils, "save_result", staticmethod(save_result))
    try:
        saved, params = client.infer("intrasense", "", {"result_extension": ".nii.gz"}, file=str(image_png))
        saved = Path(saved)
        try:
            name = saved.name
            assert saved.parent == temp, f"the client saved {saved}, not in the system temp folder {temp}"
            server_side = [kind for kind, n in before_saving if n == name]
            app_dir = server.tmp / "app"

            # the server removes its result in a background task after answering: one more request, then wait
            # (bounded) until no copy is left where the server wrote it
            def cleaned_up() -> bool:
                removed_in_temp = ("removed", name) in watch.read()
                return not any(app_dir.rglob(name)) and (removed_in_temp or "created" not in server_side)

            client.info()
            _wait_until(cleaned_up, timeout=30.0)
            leftovers = [str(p) for p in app_dir.rglob(name)]
            events = [kind for kind, n in watch.read() if n == name]

            problems = []
            if server_side:
                problems.append(
                    f"before the client saved its answer, the server had {' and '.join(server_side)} {name} in the "
                    f"folder where MONAI Label's client saves answers ({temp}); its clean-up removes that path"
                )
            if not saved.is_file():
                problems.append(f"the client's saved answer {saved} is gone: the server's clean-up removed it")
            elif events != ["created"]:
                problems.append(f"{name} in {temp}: {events} (only the client's save was expected)")
            assert not problems, "; ".join(problems)
            label, _ = load(saved)  # readable, and the label of this image
            assert label.shape[:2] == load(image_png)[0].shape[:2]
            assert params["result_extension"] == ".nii.gz"
            assert not leftovers, f"the server did not remove its result file(s) {leftovers} after answering"
        finally:
            saved.unlink(missing_ok=True)
    finally:
        watch.close()
