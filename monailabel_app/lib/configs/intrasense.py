"""``intrasense`` task config: IntraSense-Net on 2D ultrasound images (infer, train)."""

from __future__ import annotations

from monailabel_app.lib.configs.base import UltrasoundTaskConfig
from monailabel_app.lib.infers.intrasense import IntraSenseInfer
from monailabel_app.lib.trainers.base import UltrasoundTrainTask

__all__ = ["IntraSenseConfig"]


class IntraSenseConfig(UltrasoundTaskConfig):
    """IntraSense-Net: one image at a time."""

    network_name = "intrasense"
    kind = "image"

    def infer(self):
        return {self.name: IntraSenseInfer(self.store, self.labels, self.label_colors)}

    def trainer(self):
        return UltrasoundTrainTask(
            self.store, self.kind, self.train_defaults(), description="Train IntraSense-Net on images"
        )
