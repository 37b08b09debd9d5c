"""IntraSense-Net infer task: a 2D ultrasound image in, a label in the image's geometry out.

Input: PNG/JPEG, a single-frame DICOM, a one-slice NIfTI/NRRD as 3D Slicer uploads a 2D image, or a cine of one
frame (a DICOM with ``NumberOfFrames`` 1, a one-frame video).

- The one-slice ``(X, Y, 1)`` volume is not handled here: the reader (:mod:`usseg_models.io.volume`) hands it
  over squeezed to ``(X, Y)`` with ``meta["one_slice"]``, and :func:`usseg_models.io.writers.write_label` writes
  the label back as ``(X, Y, 1)`` with the input's affine.
- A one-frame cine keeps its T axis in the reader (``num_frames`` 1, as any multi-frame file): its frame is
  segmented and the label keeps the input's ``(X, Y, 1)`` shape.

A cine of more than one frame is refused with HTTP 422 (the 'dsanet' model segments cines).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monailabel_app.lib.http import unprocessable
from monailabel_app.lib.infers.predictor_task import PredictorInferTask
from usseg_models.inference.image import ImagePredictor
from usseg_models.io.layout import describe_array, spatial_ndim

__all__ = ["IntraSenseInfer"]


class IntraSenseInfer(PredictorInferTask):
    """Segment one image with IntraSense-Net (see :class:`UltrasoundInferTask` for the arguments)."""

    predictor_class = ImagePredictor

    def __init__(self, store, labels, label_colors, description="IntraSense-Net: one ultrasound image"):
        super().__init__(store, labels, label_colors, dimension=2, description=description)

    def check_input(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        ndim = spatial_ndim(array, meta)
        if ndim == 3 and array.shape[2] == 1:  # a cine of one frame: segment that frame
            return array[:, :, 0]
        if ndim != 2:
            raise unprocessable(
                f"intrasense needs a 2D image (X, Y), a one-slice volume (X, Y, 1) or a cine of one frame; got "
                f"{describe_array(array, meta)}. Use the 'dsanet' model for cines."
            )
        return array

    def predict(self, network: Any, data: np.ndarray) -> np.ndarray:
        predictor = self.predictor(network)
        return self.label_values(predictor, predictor.predict(data))

    def restore_layout(self, label: np.ndarray, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        shape = tuple(array.shape[: spatial_ndim(array, meta)])  # (X, Y), or (X, Y, 1) for a one-frame cine
        if tuple(label.shape[:2]) != shape[:2]:
            raise RuntimeError(f"image predictor returned {label.shape}, expected {shape[:2]}")
        return label.reshape(shape)
