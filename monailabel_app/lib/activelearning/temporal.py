"""Active learning for video: the unlabelled cine whose predicted masks disagree most between frames (with several
structures, the mean over the structures of each one's disagreement: :mod:`monailabel_app.lib.scoring.temporal`)."""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from monailabel_app.lib.scoring.temporal import TemporalDisagreementScoring

__all__ = ["TemporalUncertainty"]

logger = logging.getLogger(__name__)


class TemporalUncertainty(Strategy):
    """Pick the unlabelled cine with the highest temporal-disagreement score.

    Args:
        scoring: the scoring method that computes (and caches in the image info) each cine's score.

    Request options: ``max_candidates`` (default 32) bounds how many unlabelled studies are scored per call.
    Scores computed with the current weights are reused. A study that cannot be read or scored is skipped with a
    warning and listed in the answer's ``skipped`` (``{"id", "reason"}``); the best readable cine is still
    proposed. When no unlabelled study is a scorable cine, the first unlabelled study that was not skipped is
    returned; when every candidate was skipped, the answer is empty (no sample).
    """

    def __init__(self, scoring: TemporalDisagreementScoring) -> None:
        super().__init__("Unlabelled cine with the largest frame-to-frame disagreement of DSANet's masks")
        self.scoring = scoring

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        images = sorted(datastore.get_unlabeled_images())
        if not images:
            return {}
        try:
            limit = max(1, int(request.get("max_candidates", 32)))
        except (TypeError, ValueError):
            limit = 32
        scores, skipped = self.scoring.score_many(images[:limit], datastore)
        scored = [(score, image_id) for image_id, score in scores.items() if score is not None]
        if not scored:
            bad = {s["id"] for s in skipped}
            readable = [i for i in images if i not in bad]
            if not readable:
                logger.warning("temporal_uncertainty: every unlabelled study was skipped: %s", skipped)
                return {}
            return {"id": readable[0], "skipped": skipped}
        score, best = max(scored, key=lambda s: (s[0], s[1]))
        logger.info("temporal_uncertainty: %s (score %.4f of %d scored, %d skipped)", best, score, len(scored),
                    len(skipped))
        return {"id": best, "score": score, "ranking": [i for _, i in sorted(scored, reverse=True)],
                "skipped": skipped}
