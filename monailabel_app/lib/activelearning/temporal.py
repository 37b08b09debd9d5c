"""Active learning for video: the unlabelled cine whose predicted masks disagree most between frames."""

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
    Scores computed with the current weights are reused. When no unlabelled study is a cine, the first
    unlabelled study is returned.
    """

    def __init__(self, scoring: TemporalDisagreementScoring) -> None:
        super().__init__("Unlabelled cine with the largest frame-to-frame disagreement of DSANet's masks")
        self.scoring = scoring

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        images = sorted(datastore.get_unlabeled_images())
        if not images:
            return {}
        limit = int(request.get("max_candidates", 32))
        scored = []
        for image_id in images[:limit]:
            score = self.scoring.score_image(image_id, datastore)
            if score is not None:
                scored.append((score, image_id))
        if not scored:
            return {"id": images[0]}
        score, best = max(scored, key=lambda s: (s[0], s[1]))
        logger.info("temporal_uncertainty: %s (score %.4f of %d scored)", best, score, len(scored))
        return {"id": best, "score": score, "ranking": [i for _, i in sorted(scored, reverse=True)]}
