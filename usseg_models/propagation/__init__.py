"""Spreading a few corrected masks through a clip without learning: optical flow (:mod:`.flow`), the product's
propagation (:mod:`.propagate`; several structures, each from the frames that correct it:
:mod:`.structures`) and the learning-free anchors refinement is measured against (:mod:`.anchors`)."""
