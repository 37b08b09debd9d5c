"""One in-process lock around MONAI Label's local datastore index, so its file watcher survives busy servers.

MONAI Label 0.8.5's :class:`~monailabel.datastore.local.LocalDatastore` keeps the index (``_datastore.objects``)
in memory and lets two threads change it: request handlers (``add_image``, ``save_label``, ...) and the
watchdog thread that calls ``refresh()`` on every file event in the studies folder. The request side holds the
cross-process ``FileLock`` only while writing; the watcher iterates ``objects`` without it. Under a burst of
uploads the watcher's ``_remove_non_existing`` raised ``RuntimeError: dictionary changed size during
iteration``, which ended the observer thread silently: files copied into the studies folder afterwards were
never listed.

:class:`IndexLockMixin` serialises every method that reads or changes the index, and the watcher's event
handlers, with one re-entrant lock (``self._index_lock``; always taken before the ``FileLock``, never while only
the ``FileLock`` is held, so the two cannot deadlock). The handlers
also log and swallow any exception, so one bad event can never stop the watcher again.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["IndexLockMixin", "LOCKED_METHODS"]

logger = logging.getLogger(__name__)

#: LocalDatastore methods that read or change the in-memory index; each runs under ``self._index_lock``.
LOCKED_METHODS = (
    "datalist", "get_image", "get_image_uri", "get_image_info", "get_label", "get_label_uri",
    "get_labels_by_image_id", "get_label_by_image_id", "get_label_info", "get_labeled_images",
    "get_unlabeled_images", "list_images", "get_dataset_archive", "refresh", "add_image", "remove_image",
    "remove_label", "update_image_info", "update_label_info", "status", "json", "set_name", "set_description",
    "_reconcile_datastore", "_init_from_datastore_file",
)


def _locked(name: str):
    def method(self, *args, **kwargs):
        with self._index_lock:
            return getattr(super(IndexLockMixin, self), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``LocalDatastore.{name}`` under the index lock."
    return method


class IndexLockMixin:
    """Put first in the bases of a ``LocalDatastore`` subclass (see the module docstring).

    Subclasses that validate files before storing them can take ``self._index_lock`` around the storing part
    only, so slow validation does not block other requests.
    """

    def __init__(self, *args, **kwargs) -> None:
        self._index_lock = threading.RLock()  # before LocalDatastore.__init__ reconciles and starts the watcher
        super().__init__(*args, **kwargs)

    def _on_any_event(self, event) -> None:
        self._handle_watcher_event("_on_any_event", event)

    def _on_modify_event(self, event) -> None:
        self._handle_watcher_event("_on_modify_event", event)

    def _handle_watcher_event(self, name: str, event) -> None:
        """``LocalDatastore.<name>(event)`` under the index lock; any exception is logged, never raised."""
        try:
            with self._index_lock:
                getattr(super(), name)(event)
        except Exception:  # noqa: BLE001 - the watcher thread must outlive any single event
            logger.exception("datastore watcher: failed to handle %s; still watching", event)


for _name in LOCKED_METHODS:
    setattr(IndexLockMixin, _name, _locked(_name))
