"""Infer task shared by the cine (DSANet) and image (IntraSense-Net) models.

Every file a client sends is read by :func:`usseg_models.io.load_image`, which validates it in Python before
any native decoder sees it; a bad file becomes an HTTP 4xx answer naming the problem (see ``lib/http.py``).
The label is written with :mod:`usseg_models.io.writers` in the input's geometry, in the server's own results
folder (:mod:`monailabel_app.lib.compat.result_files`; never the system temp folder, where MONAI Label's client saves
the answer under the same name), and the response parameters carry the label names, the model version used and, for
DICOM input, the source UIDs and frame count.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from typing import Any

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monailabel_app.lib.compat.result_files import new_result_file
from monailabel_app.lib.http import bad_request, http_error_for
from monailabel_app.lib.input_limits import check_result_fits, read_checked
from monailabel_app.lib.inputs import resolve_request_file, spatial_ndim
from monailabel_app.lib.model_store import ModelStore
from usseg_models import palette
from usseg_models.errors import UssegError
from usseg_models.io import writers

__all__ = ["UltrasoundInferTask", "RESULT_EXTENSIONS", "spatial_ndim"]

logger = logging.getLogger(__name__)

RESULT_EXTENSIONS = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".png")


# Kept for callers outside this package's control (datastore.py); new code imports from ``lib.inputs``.


def _uid_sidecar(meta: dict[str, Any]) -> dict[str, Any] | None:
    keys = {
        "StudyInstanceUID": "study_instance_uid",
        "SeriesInstanceUID": "series_instance_uid",
        "SOPInstanceUID": "sop_instance_uid",
        "SOPClassUID": "sop_class_uid",
        "Modality": "modality",
    }
    sidecar = {dicom: meta.get(ours) for dicom, ours in keys.items() if meta.get(ours)}
    if not sidecar.get("SOPInstanceUID"):
        return None
    sidecar["NumberOfFrames"] = meta.get("num_frames")
    return sidecar


class UltrasoundInferTask(InferTask):
    """Base infer task: read + validate, predict (subclass), write the label in the input's geometry.

    Args:
        store: the model's :class:`ModelStore` (network built once, weights reloaded on change).
        labels: ``{name: value}`` of the structures (background is 0; the store's label set, ``store.labels``).
        label_colors: ``{name: (r, g, b)}`` in 0..1 for ``.seg.nrrd`` output.
        dimension: 2 for images, 3 for cines (MONAI Label's ``dimension``).
        description: shown by ``GET /info/``.

    Request parameters (``params`` JSON of ``POST /infer/{model}``):
        ``result_extension``: one of ``.nii.gz`` (default), ``.nii``, ``.seg.nrrd``, ``.nrrd``, ``.png``
        (PNG input defaults to ``.png``; PNG output needs a 2D label).
    """

    def __init__(
        self,
        store: ModelStore,
        labels: dict[str, int],
        label_colors: dict[str, tuple[float, float, float]],
        dimension: int,
        description: str,
    ) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=labels,
            dimension=dimension,
            description=description,
            config={"result_extension": list(RESULT_EXTENSIONS)},
        )
        self.store = store
        self.label_colors = dict(label_colors)

    def is_valid(self) -> bool:
        return True

    def get_path(self, validate: bool = True) -> str | None:
        path = self.store.weights_path()
        return str(path) if path else None

    def info(self) -> dict[str, Any]:
        info = super().info()
        store = self.store
        info["network"] = {"name": store.name, "config": store.config, "spatial_size": store.spatial_size,
                           "out_channels": store.labels.out_channels}
        info["label_names"] = dict(self.labels)
        info["label_colors"] = {k: list(v) for k, v in self.label_colors.items()}
        return info

    def label_values(self, predictor: Any, mask: np.ndarray) -> np.ndarray:
        """The predictor's mask as the model's label values (uint8): the app's predictors are built with the store's
        label set (``predictor.labels``) and answer label values already; a predictor without it (class indices)
        is mapped with :meth:`usseg_models.labels.LabelSet.to_values` (for one structure of value 1 the mask is
        unchanged)."""
        if getattr(predictor, "labels", None) == self.store.labels:
            return np.asarray(mask, dtype=np.uint8)
        return self.store.labels.to_values(mask)

    @abstractmethod
    def check_input(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Validate the array's dimensionality for this model; return what :meth:`predict` takes."""

    @abstractmethod
    def predict(self, network: Any, data: np.ndarray) -> np.ndarray:
        """Return the uint8 label for ``data`` in the model's label values (called under the store's lock)."""

    @abstractmethod
    def restore_layout(self, label: np.ndarray, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Give the label the input's array layout (e.g. put back a one-slice axis)."""

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        start = time.time()
        image = request.get("image")
        if not isinstance(image, str) or not image:
            raise bad_request("no image file or id given")
        try:
            path = resolve_request_file(image)
            array, meta, _ = read_checked(path, "image")  # size limit from the header (413), NaN/Inf (422)
            data = self.check_input(array, meta)
            ext = self._result_extension(request, path)
            check_result_fits(ext, array.shape[: spatial_ndim(array, meta)])
            t_read = time.time()
            label, version, extra = self.run(data, request, array, meta)
            t_infer = time.time()
            label = self.restore_layout(np.asarray(label, dtype=np.uint8), array, meta)
            out = self._write(label, meta, ext)
        except UssegError as exc:
            logger.warning("infer %s rejected %s: %s", self.store.name, image, exc)
            raise http_error_for(exc) from exc
        params: dict[str, Any] = {
            **extra,
            "label_names": dict(self.labels),
            "label_colors": {k: list(v) for k, v in self.label_colors.items()},
            "model": {"name": self.store.name, **version},
            "shape": list(writers.label_as_written(label, meta, out).shape),  # the array in the returned file
            "result_extension": ext,
            "latencies": {
                "pre": round(t_read - start, 3),
                "infer": round(t_infer - t_read, 3),
                "post": round(time.time() - t_infer, 3),
                "total": round(time.time() - start, 3),
            },
        }
        sidecar = _uid_sidecar(meta)
        if sidecar:
            params["source"] = sidecar
        if meta.get("num_frames") is not None:
            params["num_frames"] = int(meta["num_frames"])
        return out, params

    def run(
        self, data: np.ndarray, request: dict[str, Any], array: np.ndarray, meta: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
        """Predict under the store's lock; return ``(label, model version, extra response params)``.

        Subclasses that do more than one prediction (refinement) override this.
        """
        with self.store.lock:
            network, version = self.store.refresh()
            label = self.predict(network, data)
        extra = {} if self.store.weights_path() else {"untrained": True}
        return label, version, extra

    def _result_extension(self, request: dict[str, Any], path: str) -> str:
        default = ".png" if path.lower().endswith(".png") else ".nii.gz"
        ext = request.get("result_extension") or default
        if ext not in RESULT_EXTENSIONS:
            raise bad_request(f"result_extension {ext!r} is not supported; use one of {list(RESULT_EXTENSIONS)}")
        return ext

    def _write(self, label: np.ndarray, meta: dict[str, Any], ext: str) -> str:
        if ext == ".png" and label.ndim != 2:
            raise bad_request(f"PNG output needs a 2D label, this one is shaped {label.shape}")
        # never in the system temp folder, where MONAI Label's client saves the answer under this name
        out = new_result_file(self.store.model_dir, ext)
        if ext == ".png":
            # label values as in ``label_names`` (not 255), so clients read the same indices as from NIfTI
            writers.write_label(out, label, meta, mode="labels")
        elif ext.endswith(".nrrd"):
            writers.write_label(out, label, meta, segments=palette.segments_from(self.labels, self.label_colors))
        else:
            writers.write_label(out, label, meta)
        return out
