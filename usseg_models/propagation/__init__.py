"""Spreading a few corrected masks through a clip without learning: optical flow (:mod:`.flow`), the product's
propagation (:mod:`.propagate`) and the learning-free anchors refinement is measured against (:mod:`.anchors`)."""
