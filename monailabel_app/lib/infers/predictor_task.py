"""Infer task that runs one :mod:`usseg_models.inference` predictor, built from the model store on first use.

Shared by :class:`~monailabel_app.lib.infers.dsanet.DSANetInfer` (cines) and
:class:`~monailabel_app.lib.infers.intrasense.IntraSenseInfer` (images).
"""

from __future__ import annotations

from typing import Any

from monailabel_app.lib.infers.base import UltrasoundInferTask

__all__ = ["PredictorInferTask"]


class PredictorInferTask(UltrasoundInferTask):
    """:class:`UltrasoundInferTask` whose predictor (:attr:`predictor_class`) is built once, on the first request.

    The predictor gets the store's network, spatial size and device, bf16 autocast on CUDA and the store's label
    set (so it answers label values). It is kept in ``self._predictor`` (``None`` until the first request).
    """

    predictor_class: type

    def __init__(self, store, labels, label_colors, dimension: int, description: str) -> None:
        super().__init__(store, labels, label_colors, dimension=dimension, description=description)
        self._predictor: Any = None

    def predictor(self, network: Any) -> Any:
        """The task's predictor, built from ``network`` on the first call."""
        if self._predictor is None:
            store = self.store
            self._predictor = self.predictor_class(
                network, store.spatial_size, store.device, amp=store.device.type == "cuda", labels=store.labels,
            )
        return self._predictor
