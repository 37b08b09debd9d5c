"""Infer tasks of the usseg app."""

from monailabel_app.lib.infers.base import UltrasoundInferTask

__all__ = ["UltrasoundInferTask"]
