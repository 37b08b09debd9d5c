"""``dsanet`` task config: DSANet on ultrasound cines (infer, train, temporal-uncertainty active learning)."""

from __future__ import annotations

from functools import cached_property

from monailabel_app.lib.activelearning.temporal import TemporalUncertainty
from monailabel_app.lib.configs.base import UltrasoundTaskConfig
from monailabel_app.lib.infers.dsanet import DSANetInfer
from monailabel_app.lib.scoring.temporal import TemporalDisagreementScoring
from monailabel_app.lib.trainers.base import UltrasoundTrainTask

__all__ = ["DSANetConfig"]


class DSANetConfig(UltrasoundTaskConfig):
    """DSANet: every frame of a cine from its 3-frame window; the infer task, scoring and strategy share it."""

    network_name = "dsanet"
    kind = "cine"
    LABELS = {"lesion": 1}
    LABEL_COLORS = {"lesion": (1.0, 0.2, 0.2)}

    @cached_property
    def infer_task(self) -> DSANetInfer:
        return DSANetInfer(self.store, self.labels, self.label_colors)

    @cached_property
    def scoring(self) -> TemporalDisagreementScoring:
        return TemporalDisagreementScoring(self.infer_task)

    def infer(self):
        return {self.name: self.infer_task}

    def trainer(self):
        return UltrasoundTrainTask(self.store, self.kind, self.train_defaults(), description="Train DSANet on cines")

    def scoring_method(self):
        return {"temporal_disagreement": self.scoring}

    def strategy(self):
        return {"temporal_uncertainty": TemporalUncertainty(self.scoring)}
