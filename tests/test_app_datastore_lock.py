"""The local datastore's index lock: the watcher's refresh and uploads never interleave (no server)."""

from __future__ import annotations

import logging
import os
import sys
import threading

import numpy as np
import pytest
from monailabel.datastore.local import LocalDatastore
from PIL import Image

from monailabel_app.lib import datastore as datastore_module
from monailabel_app.lib.datastore import SafeLocalDatastore


def _studies(tmp_path, n=3):
    studies = tmp_path / "studies"
    studies.mkdir()
    image = np.zeros((8, 8), np.uint8)
    for i in range(n):
        Image.fromarray(image).save(studies / f"img_{i}.png")
    Image.fromarray(image).save(tmp_path / "upload.png")
    return studies


def _upload_during_refresh(store, tmp_path, monkeypatch) -> list[BaseException]:
    """Run ``store.refresh()`` in a 'watcher' thread and upload an image while it walks the index.

    ``os.path.exists`` is called once per indexed image inside MONAI Label's ``_remove_non_existing`` loop (outside
    its ``FileLock``); in the watcher thread its first call there pauses until the upload has finished (or 1 s has
    passed, when the upload is blocked by the lock). Returns the exceptions the watcher raised.
    """
    real_exists = os.path.exists
    walking, uploaded = threading.Event(), threading.Event()
    watcher_name = "watcher-under-test"

    def exists(path):
        in_loop = sys._getframe(1).f_code.co_name == "_remove_non_existing"  # not the index-file check
        if in_loop and threading.current_thread().name == watcher_name and not walking.is_set():
            walking.set()
            uploaded.wait(timeout=5)
        return real_exists(path)

    errors: list[BaseException] = []

    def watcher():
        try:
            store.refresh()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    monkeypatch.setattr(os.path, "exists", exists)
    thread = threading.Thread(target=watcher, name=watcher_name)
    thread.start()
    assert walking.wait(timeout=10)
    upload = threading.Thread(target=store.add_image, args=("new_img", str(tmp_path / "upload.png"), {}))
    upload.start()
    upload.join(timeout=1.0)  # returns at once without the lock; times out while the lock holds it back
    uploaded.set()
    thread.join(timeout=10)
    upload.join(timeout=10)
    monkeypatch.undo()
    return errors


def test_unlocked_local_datastore_shows_the_race(tmp_path, monkeypatch):
    """Without the lock (MONAI Label's behaviour) the watcher dies with the error seen in production."""
    unlocked = type("Unlocked", (datastore_module._SafeLabelsMixin, LocalDatastore), {})
    store = unlocked(str(_studies(tmp_path)), extensions=["*.png"], auto_reload=False)
    errors = _upload_during_refresh(store, tmp_path, monkeypatch)
    assert errors and "dictionary changed size during iteration" in str(errors[0])


def test_index_lock_serialises_watcher_and_uploads(tmp_path, monkeypatch):
    store = SafeLocalDatastore(str(_studies(tmp_path)), extensions=["*.png"], auto_reload=False)
    errors = _upload_during_refresh(store, tmp_path, monkeypatch)
    assert errors == []
    assert sorted(store.list_images()) == ["img_0", "img_1", "img_2", "new_img"]


def test_watcher_event_handler_never_raises(tmp_path, monkeypatch, caplog):
    store = SafeLocalDatastore(str(_studies(tmp_path)), extensions=["*.png"], auto_reload=False)

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "refresh", broken)
    with caplog.at_level(logging.ERROR, logger="monailabel_app.lib.compat.datastore_lock"):
        store._on_any_event("created img_9.png")  # the watchdog thread would die if this raised
    assert "still watching" in caplog.text and "boom" in caplog.text


@pytest.mark.parametrize("name", ["list_images", "get_labeled_images", "datalist", "status", "refresh"])
def test_readers_wait_for_the_lock(tmp_path, name):
    """Readers never see the index half-rebuilt by a refresh: they wait while the lock is held."""
    store = SafeLocalDatastore(str(_studies(tmp_path, 1)), extensions=["*.png"], auto_reload=False)
    done = threading.Event()
    with store._index_lock:
        reader = threading.Thread(target=lambda: (getattr(store, name)(), done.set()))
        reader.start()
        assert not done.wait(timeout=0.2)
    assert done.wait(timeout=5)
    reader.join()
