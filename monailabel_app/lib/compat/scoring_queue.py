"""Automatic scoring runs queued at most once per method (not once per request).

With ``MONAI_LABEL_AUTO_UPDATE_SCORING`` on (MONAI Label's default), :meth:`MONAILabelApp.async_scoring` queues
every scoring method after each ``POST /activelearning/{strategy}`` and each training, with ``enqueue=True`` and no
check of what is queued already. A scoring run is a subprocess that imports the app and scores every unlabelled
study (here: DSANet over every frame of every unlabelled cine), about 10 s of CPU on the sample studies. Ten
"next sample" clicks therefore queue ten runs that execute one after another for minutes, competing with the
training and the inference the user is waiting for; each of them computes the same scores as the last one.

:class:`CoalescedScoring` (mixed into the app before :class:`MONAILabelApp`) queues a method only when no run of it
is waiting to start: one may run and one wait; the waiting one reads the datastore when it starts, so it sees every
change made while it waited. Outside the server (a training subprocess asks the server over HTTP) nothing changes.
Upstream write-up: ``docs/upstream/07-scoring-queue-grows-per-request.md``.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["CoalescedScoring", "waiting_scoring_methods"]

logger = logging.getLogger(__name__)


def waiting_scoring_methods() -> set[str]:
    """Scoring methods with a run queued and not started (MONAI Label's task list: status ``SUBMITTED``)."""
    from monailabel.utils.async_tasks.utils import background_tasks

    return {str(task.get("request", {}).get("method")) for task in list(background_tasks.get("scoring") or [])
            if task.get("status") == "SUBMITTED"}


class CoalescedScoring:
    """Mixin for a :class:`MONAILabelApp`: :meth:`async_scoring` skips methods that already have a run waiting."""

    def async_scoring(self, method: str | None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if not getattr(self, "_server_mode", False):
            return super().async_scoring(method, params)
        methods = [method] if method else list(getattr(self, "_scoring_methods", {}))
        waiting = waiting_scoring_methods()
        result: dict[str, Any] = {}
        for m in methods:
            if m in waiting:
                logger.debug("scoring %s: a run is already waiting to start; not queued again", m)
                result[m] = None
            else:
                result[m] = super().async_scoring(m, params)
        return result[method] if method else result
