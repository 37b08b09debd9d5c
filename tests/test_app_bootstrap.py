"""A working model at first start: a fresh server on a fresh copy of the sample studies trains itself.

The product defaults are used (``untrained_infer refuse``, ``bootstrap_min_labels 3``): until the bootstrap
training has published a model, inference answers 409 with a sentence about the training; afterwards the sample
cines — the three labelled ones and the unlabelled one, scored against the generator's truth — segment with a
mean Dice of at least 0.7 (random weights score about 0.1 on them: most of every frame is marked), and so do the
sample PNG images with IntraSense-Net.
"""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
import requests
from PIL import Image

from usseg_models.metrics import dice

pytestmark = [pytest.mark.server, pytest.mark.slow]

CINES = ("cine_000", "cine_001", "cine_002", "cine_003")


def _truth(studies, image_id):
    for folder in ("labels/final", "truth"):
        path = studies / folder / f"{image_id}.nii.gz"
        if path.exists():
            return np.asarray(nib.load(str(path)).dataobj) > 0
    raise FileNotFoundError(image_id)


def test_bootstrap_training_at_first_start(bootstrapped):
    """The server of :func:`bootstrap_fixtures.bootstrapped` (started here or by an earlier test module)."""
    url, studies, first = bootstrapped.url, bootstrapped.studies, bootstrapped.first
    assert first.status_code == 409, first.text
    detail = first.json()["detail"]
    assert detail.startswith("model dsanet is not trained yet") and "first training is" in detail, detail
    assert bootstrapped.trained_at_first is False

    usseg = bootstrapped.usseg
    assert usseg["dsanet"]["history"][-1]["bootstrap"] is True
    scores = {}
    for cine in CINES:
        r = requests.post(f"{url}/infer/dsanet", params={"image": cine, "output": "image"}, timeout=300)
        assert r.status_code == 200, r.text
        pred = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(r.content)).dataobj) > 0
        scores[cine] = dice(pred, _truth(studies, cine), frame_axis=-1)
    assert np.mean(list(scores.values())) >= 0.7, scores
    assert min(scores.values()) >= 0.5, scores
    images = {}
    for image in ("image_000", "image_001", "image_002", "image_003"):
        r = requests.post(f"{url}/infer/intrasense", params={"image": image, "output": "image"}, timeout=120)
        assert r.status_code == 200, r.text
        pred = np.asarray(Image.open(io.BytesIO(r.content))) > 0
        truth = np.asarray(Image.open(studies / "labels" / "final" / f"{image}.png")) > 0
        images[image] = dice(pred, truth, frame_axis=None)
    assert np.mean(list(images.values())) >= 0.7, images
