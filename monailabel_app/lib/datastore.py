"""Datastores that never lose a label and refuse bad ids and files with HTTP 4xx.

* :class:`SafeLocalDatastore` — MONAI Label's local folder datastore, plus: ids with path separators or
  ``..`` are refused; uploaded images are checked against the decoded-size limit from their header (413),
  validated by :func:`usseg_models.io.load_image` and refused when they hold NaN/Inf (422)
  (:mod:`monailabel_app.lib.input_limits`); labels and the ``datastore_v2.json`` index are written atomically
  (temporary file in the same folder + ``os.replace``), so a ``kill -9`` mid-save leaves the previous label
  intact and a restarted server finds every label; the in-memory index is guarded by one lock so the file
  watcher survives bursts of uploads (:mod:`monailabel_app.lib.compat.datastore_lock`).
* Both datastores check a label against its image before storing anything (size limit, then
  :func:`monailabel_app.lib.label_checks.check_label`: same (X, Y) and frame count, one channel, finite values
  of the model's label set); a label that fails is answered 422 (413 over the size limit), the stored label and
  the auto-retrain count stay as they were.
* :class:`UltrasoundDicomWebDatastore` — MONAI Label's DICOMweb datastore for ultrasound: series are handed
  to the infer tasks as DICOM files (no NIfTI conversion through ITK, which ignores US calibration), and
  labels are stored locally keyed by SeriesInstanceUID, because MONAI Label's DICOM SEG export needs
  FrameOfReferenceUID and ImagePositionPatient/OrientationPatient, which US objects lack.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any

from filelock import FileLock
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.datastore.utils.dicom import dicom_web_download_series
from monailabel.interfaces.datastore import DefaultLabelTag

from monailabel_app.lib.compat.datastore_lock import IndexLockMixin
from monailabel_app.lib.http import not_found, unprocessable, validate_id
from monailabel_app.lib.input_limits import read_checked
from monailabel_app.lib.inputs import resolve_request_file as resolve_input_file
from monailabel_app.lib.label_checks import BINARY_LABELS, LabelMismatch, check_label, check_reviewed_frames
from usseg_models.errors import UssegError
from usseg_models.io.formats import probe_header
from usseg_models.io.header import ImageHeader

__all__ = ["SafeLocalDatastore", "UltrasoundDicomWebDatastore", "atomic_copy"]

logger = logging.getLogger(__name__)


def atomic_copy(src: str, dest: str) -> None:
    """Copy ``src`` to ``dest`` so that ``dest`` is always either the old or the complete new file."""
    folder = os.path.dirname(dest) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _SafeLabelsMixin:
    """Atomic, checked label saving and an atomically written index for :class:`LocalDatastore` subclasses.

    Attributes:
        label_values: the label values (background 0 included) a label may hold, per image kind (``"cine"``,
            ``"image"``); the app sets them from its models' label sets.
        label_structures: per image kind, the structures as ``"1 LV, 2 MYO, 3 LA"`` (named when a label is refused).
    """

    label_values: dict[str, frozenset[int]] = {"cine": BINARY_LABELS, "image": BINARY_LABELS}
    label_structures: dict[str, str] = {}
    _index_lock = contextlib.nullcontext()  # no in-process index lock unless IndexLockMixin provides one

    def _image_header(self, image_id: str) -> ImageHeader:
        """Header of the stored image (no pixel decoded); 422 when the stored file cannot be read."""
        try:
            return probe_header(resolve_input_file(self.get_image_uri(image_id)))
        except (UssegError, OSError) as exc:
            raise unprocessable(f"cannot check the label: image {image_id!r} is unreadable ({exc})") from exc

    def check_label_file(self, image_id: str, label_filename: str,
                         label_info: dict[str, Any] | None = None) -> dict[str, Any]:
        """Refuse a label that does not fit its image or the model (see :mod:`monailabel_app.lib.label_checks`).

        Raises:
            HTTPException: 413 over the decoded-size limit; 422 unreadable, NaN/Inf, not matching the image, or
            ``reviewed_frames`` in ``label_info`` that are not frames of the cine.
        """
        image = self._image_header(image_id)
        label, meta, _ = read_checked(label_filename, "label")
        kind = "cine" if image.is_cine else "image"
        allowed = self.label_values.get(kind, BINARY_LABELS)
        try:
            checked = check_label(label, meta, image, allowed, self.label_structures.get(kind))
            check_reviewed_frames(label_info, image)
            return checked
        except LabelMismatch as exc:
            raise unprocessable(f"label for {image_id!r} ({image.describe()}) refused: {exc}") from exc

    def state_dir(self) -> str:
        """The datastore's own writable folder (it holds ``datastore_v2.json``; the labels are under it)."""
        return os.path.dirname(self._datastore_config_path)

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], *args, **kwargs
    ) -> str:
        validate_id(image_id, "image id")
        validate_id(label_tag, "label tag")
        with self._index_lock:
            if self._datastore.objects.get(image_id) is None:
                raise not_found(f"image {image_id!r} is not in the datastore")
        checked = self.check_label_file(image_id, label_filename, label_info)  # before anything is written
        _, label_ext = self._to_id(os.path.basename(label_filename))
        with self._index_lock, FileLock(self._lock_file):
            obj = self._datastore.objects.get(image_id)
            if obj is None:  # removed while the label was being checked
                raise not_found(f"image {image_id!r} is not in the datastore")
            label_path = self._datastore.label_path(label_tag)
            name = self._filename(image_id, label_ext)
            dest = os.path.join(label_path, name)
            os.makedirs(label_path, exist_ok=True)
            atomic_copy(label_filename, dest)
            previous = obj.labels.get(label_tag)
            if previous is not None and previous.ext != label_ext:
                old = os.path.join(label_path, self._filename(image_id, previous.ext))
                if os.path.isfile(old):
                    os.unlink(old)
            label_info = dict(label_info or {})
            label_info["ts"] = int(time.time())
            label_info["name"] = name
            obj.labels[label_tag] = DataModel(info=label_info, ext=label_ext)
            self._update_datastore_file(lock=False)
        logger.info("saved label %s for %s (%s): shape %s, values %s", name, image_id, label_tag, checked["shape"],
                    checked["values"])
        return image_id

    def _update_datastore_file(self, lock: bool = True) -> None:
        def write() -> None:
            self._ignore_event_config = True
            text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
            folder = os.path.dirname(self._datastore_config_path)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._datastore_config_path)
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()


class SafeLocalDatastore(IndexLockMixin, _SafeLabelsMixin, LocalDatastore):
    """Local folder datastore with id checks, file validation and atomic writes (see the module docstring)."""

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        if image_id:
            validate_id(image_id, "image id")
        else:
            validate_id(self._to_id(os.path.basename(image_filename))[0], "image id")
        read_checked(image_filename, "image")  # size limit from the header, readable, finite
        return super().add_image(image_id, image_filename, image_info)

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        validate_id(image_id, "image id")
        return super().get_image_info(image_id)

    def remove_image(self, image_id: str) -> None:
        validate_id(image_id, "image id")
        if image_id not in self._datastore.objects:
            raise not_found(f"image {image_id!r} is not in the datastore")
        super().remove_image(image_id)


class UltrasoundDicomWebDatastore(_SafeLabelsMixin, DICOMWebDatastore):
    """DICOMweb datastore for ultrasound series with labels kept locally by SeriesInstanceUID.

    Args:
        client: a ``dicomweb_client`` client for the PACS.
        search_filter: QIDO filter for the series to list (e.g. ``{"Modality": "US"}``).
        cache_path: where downloaded series and local labels live (default ``~/.cache/monailabel/dicom``).
        fetch_by_frame: MONAI Label's option, passed through.
    """

    def __init__(self, client, search_filter, cache_path=None, fetch_by_frame=False):
        super().__init__(
            client=client,
            search_filter=search_filter,
            cache_path=cache_path,
            fetch_by_frame=fetch_by_frame,
            convert_to_nifti=False,
        )

    def get_image_uri(self, image_id: str) -> str:
        validate_id(image_id, "series id")
        image_dir = os.path.realpath(os.path.join(self._datastore.image_path(), image_id))
        if not os.path.isdir(image_dir) or not os.listdir(image_dir):
            if image_id not in self.list_images():
                raise not_found(f"series {image_id} is not listed by the DICOMweb server")
            dicom_web_download_series(None, image_id, image_dir, self._client, self._fetch_by_frame)
        if image_id not in self._datastore.objects:
            with FileLock(self._lock_file):
                info = self._dicom_info(image_id)
                info.update({"ts": int(time.time()), "name": image_id})
                self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=""))
                self._update_datastore_file(lock=False)
        return image_dir

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """MONAI Label keeps an uploaded file in the local cache (studies come from the PACS); same checks."""
        validate_id(image_id or self._to_id(os.path.basename(image_filename))[0], "image id")
        read_checked(image_filename, "image")  # size limit from the header, readable, finite
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id, label_filename, label_tag, label_info, label_id: str = "") -> str:
        self.get_image_uri(image_id)  # downloads and registers the series if needed
        return super().save_label(image_id, label_filename, label_tag, label_info)

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        return LocalDatastore.get_label_uri(self, label_id, label_tag)

    def get_labeled_images(self, label_tag=None, labels=None) -> list[str]:
        listed = set(self.list_images())
        return [i for i in LocalDatastore.get_labeled_images(self, label_tag, labels) if i in listed]

    def get_unlabeled_images(self, label_tag=None, labels=None) -> list[str]:
        labeled = set(self.get_labeled_images())
        return [i for i in self.list_images() if i not in labeled]

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        return LocalDatastore.datalist(self, full_path)

    def status(self) -> dict[str, Any]:
        listed = self.list_images()
        labeled = self.get_labeled_images()
        return {
            "total": len(listed),
            "completed": len(labeled),
            "label_tags": [DefaultLabelTag.FINAL.value],
            "train": self.datalist(full_path=False),
        }
