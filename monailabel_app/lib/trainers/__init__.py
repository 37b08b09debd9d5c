"""Train tasks of the usseg app."""

from monailabel_app.lib.trainers.base import UltrasoundTrainTask

__all__ = ["UltrasoundTrainTask"]
