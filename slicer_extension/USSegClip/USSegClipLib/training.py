"""Training status: start training, poll ``GET /train/`` and tell when new weights are live.

MONAI Label's infer tasks reload a model when its weight file changes, so "a new model is live" means the
checksum reported by ``GET /model/info/{model}`` differs from the one seen when training was started.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .client import MonaiLabelClient
from .errors import ServerError

__all__ = ["TrainingMonitor", "TrainingState"]

logger = logging.getLogger(__name__)

FINISHED = ("DONE", "ERROR", "STOPPED")


@dataclass
class TrainingState:
    """One poll of the server's training state.

    Attributes:
        status: ``"NONE"`` (no task yet) or the task status: SUBMITTED, RUNNING, DONE, ERROR, STOPPED.
        task_id: the server's task id ("" when none).
        details: the last lines of the task's log, as the server keeps them.
        checksum: checksum of the live weights of the watched model (None when it has none).
        new_model_live: True once the live weights differ from those seen when the monitor started.
    """

    status: str = "NONE"
    task_id: str = ""
    details: list[str] = field(default_factory=list)
    checksum: str | None = None
    new_model_live: bool = False

    @property
    def running(self) -> bool:
        return self.status in ("SUBMITTED", "RUNNING")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def summary(self) -> str:
        """One line for the GUI."""
        live = "; new model is live" if self.new_model_live else ""
        last = f" — {self.details[-1]}" if self.details and self.running else ""
        return f"training: {self.status.lower()}{live}{last}"

    def weights_summary(self) -> str:
        """The live weights for the GUI: ``"weights 0123456789ab — NEW MODEL LIVE"`` once new weights are live."""
        live = " — NEW MODEL LIVE" if self.new_model_live else ""
        return f"weights {(self.checksum or 'none')[:12]}{live}"


class TrainingMonitor:
    """Watches training of one model.

    Args:
        client: the server client.
        model: the model whose weights are watched (e.g. ``"dsanet"``).

    Examples::

        monitor = TrainingMonitor(client, "dsanet")
        monitor.start({"max_epochs": 1})
        state = monitor.poll()          # call from a GUI timer
        state = monitor.wait(timeout=600)
    """

    def __init__(self, client: MonaiLabelClient, model: str):
        self.client = client
        self.model = model
        self.baseline = self._checksum()
        self.task_id = ""

    def _checksum(self) -> str | None:
        info = self.client.model_info(self.model)
        return info.get("checksum") if info else None

    def start(self, params: dict[str, Any] | None = None) -> TrainingState:
        """Start training the model; the current weights become the baseline for ``new_model_live``."""
        self.baseline = self._checksum()
        task = self.client.start_training(self.model, params)
        self.task_id = str(task.get("id", "")) if isinstance(task, dict) else ""
        logger.info("training of %s submitted (task %s)", self.model, self.task_id or "?")
        return self.poll()

    def poll(self) -> TrainingState:
        """Read the latest training task and the live weights' checksum."""
        task = self.client.training_status()
        checksum = self._checksum()
        if not task:
            return TrainingState(checksum=checksum, new_model_live=checksum is not None and checksum != self.baseline)
        if isinstance(task, list):
            task = task[-1] if task else {}
        details = [str(x) for x in (task.get("details") or [])][-20:]
        return TrainingState(
            status=str(task.get("status", "NONE")).upper(),
            task_id=str(task.get("id", "")),
            details=details,
            checksum=checksum,
            new_model_live=checksum is not None and checksum != self.baseline,
        )

    def wait(self, timeout: float, interval: float = 1.0) -> TrainingState:
        """Poll until the task started by :meth:`start` finishes.

        Raises:
            ServerError: the task did not finish within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = self.poll()
            if state.finished and (not self.task_id or state.task_id == self.task_id):
                return state
            if time.monotonic() > deadline:
                raise ServerError(f"training of {self.model} did not finish within {timeout:g} s "
                                  f"(last status {state.status})")
            time.sleep(interval)
