"""IntraSense-Net infer task: a 2D ultrasound image in, a label in the image's geometry out.

Input: PNG/JPEG, a single-frame DICOM, or a one-slice (X, Y, 1) NIfTI/NRRD as 3D Slicer uploads a 2D image
(the label then comes back shaped (X, Y, 1) with the same affine).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monailabel_app.lib.http import unprocessable
from monailabel_app.lib.infers.base import UltrasoundInferTask
from monailabel_app.lib.inputs import spatial_ndim
from usseg_models.inference.image import ImagePredictor

__all__ = ["IntraSenseInfer"]


class IntraSenseInfer(UltrasoundInferTask):
    """Segment one image with IntraSense-Net (see :class:`UltrasoundInferTask` for the arguments)."""

    def __init__(self, store, labels, label_colors, description="IntraSense-Net: one ultrasound image"):
        super().__init__(store, labels, label_colors, dimension=2, description=description)
        self._predictor: ImagePredictor | None = None

    def check_input(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        ndim = spatial_ndim(array, meta)
        if ndim == 3 and array.shape[2] == 1:
            return array[:, :, 0]
        if ndim != 2:
            raise unprocessable(
                f"intrasense needs a 2D image (X, Y) or a one-slice volume (X, Y, 1); got an array shaped "
                f"{tuple(array.shape)}. Use the 'dsanet' model for cines."
            )
        return array

    def predict(self, network: Any, data: np.ndarray) -> np.ndarray:
        if self._predictor is None:
            self._predictor = ImagePredictor(
                network, self.store.spatial_size, self.store.device, amp=self.store.device.type == "cuda"
            )
        return self._predictor.predict(data)

    def restore_layout(self, label: np.ndarray, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        xy = tuple(array.shape[:2])
        if tuple(label.shape[:2]) != xy:
            raise RuntimeError(f"image predictor returned {label.shape}, expected {xy}")
        if spatial_ndim(array, meta) == 3:  # one-slice input: give the slice axis back
            return label.reshape(xy + (1,))
        return label
