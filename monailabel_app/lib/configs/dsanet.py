"""``dsanet`` task config: DSANet on ultrasound cines (infer, train, temporal-uncertainty active learning)."""

from __future__ import annotations

from functools import cached_property

from monailabel_app.lib.activelearning.temporal import TemporalUncertainty
from monailabel_app.lib.configs.base import UltrasoundTaskConfig, conf_value
from monailabel_app.lib.infers.dsanet import DSANetInfer
from monailabel_app.lib.infers.refine import DSANetRefineInfer, RefineLimits
from monailabel_app.lib.scoring.temporal import TemporalDisagreementScoring
from monailabel_app.lib.trainers.base import UltrasoundTrainTask

__all__ = ["DSANetConfig"]


class DSANetConfig(UltrasoundTaskConfig):
    """DSANet: every frame of a cine from its 3-frame window; the infer task, scoring and strategy share it."""

    network_name = "dsanet"
    kind = "cine"

    @cached_property
    def infer_task(self) -> DSANetInfer:
        return DSANetInfer(self.store, self.labels, self.label_colors)

    @cached_property
    def scoring(self) -> TemporalDisagreementScoring:
        return TemporalDisagreementScoring(self.infer_task)

    @cached_property
    def refine_task(self) -> DSANetRefineInfer:
        limits = RefineLimits(
            max_steps=int(conf_value(self.conf, self.name, "refine_max_steps", 60)),
            time_budget_s=float(conf_value(self.conf, self.name, "refine_time_budget_s", 1.5)),
            max_concurrent=int(conf_value(self.conf, self.name, "refine_max_concurrent", 1)),
            deadline_s=(None if (deadline := conf_value(self.conf, self.name, "refine_deadline_s")) is None
                        else float(deadline)),
        )
        return DSANetRefineInfer(self.store, self.labels, self.label_colors, limits)

    def infer(self):
        """``<name>`` segments a cine; ``<name>_refine`` re-segments it from a few corrected frames."""
        return {self.name: self.infer_task, f"{self.name}_refine": self.refine_task}

    def trainer(self):
        return UltrasoundTrainTask(self.store, self.kind, self.train_defaults(), description="Train DSANet on cines")

    def scoring_method(self):
        return {"temporal_disagreement": self.scoring}

    def strategy(self):
        return {"temporal_uncertainty": TemporalUncertainty(self.scoring)}
