"""Evaluation reports: paper metrics, temporal stability, speckle robustness, per-image CSV, overlays."""

from usseg_models.evaluation.image import evaluate_image_model
from usseg_models.evaluation.video import evaluate_dsanet

__all__ = ["evaluate_dsanet", "evaluate_image_model"]
