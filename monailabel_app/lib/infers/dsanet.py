"""DSANet infer task: an ultrasound cine in, an (X, Y, T) label volume in the cine's geometry out.

Input: a multi-frame US DICOM, or an (X, Y, T) NIfTI/NRRD volume as 3D Slicer uploads a sequence.
Every frame t is segmented from its 3-frame window (t, t-1, t-2) by
:class:`usseg_models.inference.video.DSANetPredictor`; at the start of a clip, where past frames are
missing, the window uses the following frames instead, as the authors' loader does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monailabel_app.lib.http import unprocessable
from monailabel_app.lib.infers.predictor_task import PredictorInferTask
from usseg_models.inference.video import DSANetPredictor
from usseg_models.io.layout import describe_array, spatial_ndim

__all__ = ["DSANetInfer"]


class DSANetInfer(PredictorInferTask):
    """Segment every frame of a cine with DSANet (see :class:`UltrasoundInferTask` for the arguments)."""

    predictor_class = DSANetPredictor

    def __init__(self, store, labels, label_colors, description="DSANet: every frame of an ultrasound cine"):
        super().__init__(store, labels, label_colors, dimension=3, description=description)

    def check_input(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        ndim = spatial_ndim(array, meta)
        if ndim != 3:
            raise unprocessable(
                f"dsanet needs a cine (X, Y, T): a multi-frame DICOM, a video or a 3D volume; got "
                f"{describe_array(array, meta)}. Use the 'intrasense' model for single images."
            )
        if array.shape[2] < 1:
            raise unprocessable("the cine has zero frames")
        return array

    def predict(self, network: Any, data: np.ndarray) -> np.ndarray:
        predictor = self.predictor(network)
        return self.label_values(predictor, predictor.predict_clip(data))

    def restore_layout(self, label: np.ndarray, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        expected = tuple(array.shape[:3])
        if tuple(label.shape) != expected:
            raise RuntimeError(f"DSANetPredictor returned {label.shape}, expected {expected}")
        return label
