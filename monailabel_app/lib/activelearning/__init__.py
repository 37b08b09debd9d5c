"""Active-learning strategies of the usseg app (``random`` and ``first`` come from MONAI Label)."""

from monailabel_app.lib.activelearning.temporal import TemporalUncertainty

__all__ = ["TemporalUncertainty"]
