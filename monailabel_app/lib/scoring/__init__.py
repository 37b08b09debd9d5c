"""Scoring methods of the usseg app."""

from monailabel_app.lib.scoring.temporal import TemporalDisagreementScoring, temporal_disagreement

__all__ = ["TemporalDisagreementScoring", "temporal_disagreement"]
