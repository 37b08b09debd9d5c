"""Random next-sample strategy that never divides by a zero total weight.

MONAI Label's ``Random`` weighs each unlabelled image by the seconds since it was last proposed. When every
candidate was proposed within the current second (a single unlabelled image asked for twice quickly), all weights
are 0 and ``random.choices`` raises ``ValueError: Total of weights must be greater than zero`` — an HTTP 500. Here
each weight is at least 1 second, so recently proposed images are still the least likely, and the request never
fails.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.activelearning.random import Random

__all__ = ["SafeRandom"]

logger = logging.getLogger(__name__)


class SafeRandom(Random):
    """:class:`monailabel.tasks.activelearning.random.Random` with weights of at least 1 (see the module docstring)."""

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        strategy = request.get("strategy", "random")
        now = int(time.time())
        weights = [
            max(1, now - int(datastore.get_image_info(image).get("strategy", {}).get(strategy, {}).get("ts", 0)))
            for image in images
        ]
        index = random.choices(range(len(images)), weights=weights)[0]
        logger.info("Random: selected %s (weight %d of %d candidates)", images[index], weights[index], len(images))
        return {"id": images[index], "weight": weights[index]}
