"""Generate a synthetic sample data set laid out as a MONAI Label local datastore.

Layout of ``OUT`` (``<id>`` = ``cine_000``, ``image_000``, ``imagedcm_000``, ...)::

    OUT/cine_NNN.dcm                   US Multi-frame Image Storage, (T, rows, cols) 8-bit frames
    OUT/imagedcm_NNN.dcm               US Image Storage, one frame
    OUT/image_NNN.png                  8-bit grey PNG
    OUT/labels/final/cine_NNN.nii.gz   (X, Y, T) uint8, affine diag(sx_mm, sy_mm, 1, 1)
    OUT/labels/final/imagedcm_NNN.nii.gz  (X, Y) uint8, affine diag(sx_mm, sy_mm, 1, 1)
    OUT/labels/final/image_NNN.png     (rows, cols) uint8 PNG
    OUT/truth/cine_NNN.nii.gz          labels withheld from the datastore (``unlabeled``; for evaluation)
    OUT/manifest.json                  seed, settings, programmed motion and per-frame truth of every item
                                       ("label": datastore label or null, "truth_label": always the mask file)

Label values are 0 = background and 1 = target (lesion interior or chamber cavity) in every format.
Each item ``i`` of kind ``k`` (0 = cine, 1 = PNG image, 2 = DICOM image) is simulated with the seed
``numpy.random.SeedSequence([seed, k, i])``; even items show a cardiac-like chamber, odd items a lesion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from usseg_models.data.dicom_writer import synthetic_identity, write_us_cine, write_us_image
from usseg_models.data.synthetic import SyntheticCine, simulate_cine
from usseg_models.io.writers import write_nifti, write_png

__all__ = ["LABEL_VALUES", "generate_sample_set"]

logger = logging.getLogger(__name__)

LABEL_VALUES = {0: "background", 1: "target (lesion interior or chamber cavity)"}
_KIND_CODES = {"cine": 0, "image": 1, "imagedcm": 2}


def _label_affine(pixel_mm: float) -> np.ndarray:
    """Affine ``diag(sx, sy, 1, 1)`` (mm) shared by the DICOM cine and its NIfTI mask (docs/DESIGN.md)."""
    return np.diag([pixel_mm, pixel_mm, 1.0, 1.0])


def _fan_box(cine: SyntheticCine) -> tuple[int, int, int, int]:
    cols = np.flatnonzero(cine.fan_mask.any(axis=1))  # fan_mask is (X, Y)
    rows = np.flatnonzero(cine.fan_mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def generate_sample_set(
    out_dir: str | Path,
    seed: int = 0,
    frames: int = 24,
    cines: int = 4,
    images: int = 4,
    dicom_images: int = 2,
    size: int = 128,
    geometry: str = "sector",
    unlabeled: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Simulate and write the data set; return the manifest (also written to ``OUT/manifest.json``).

    Args:
        out_dir: output folder (created; files of the same names are overwritten, others left alone).
        seed: base seed (non-negative); everything written is a function of the arguments.
        frames: frames per cine (>= 1).
        cines: number of multi-frame DICOM cines.
        images: number of PNG images.
        dicom_images: number of single-frame DICOM images.
        size: frame size in pixels (square, >= 16).
        geometry: ``"sector"`` or ``"linear"``.
        unlabeled: the last ``unlabeled`` cines get no datastore label; their truth goes to ``OUT/truth/``.
        progress: called with each item id once the item is written.

    Raises:
        ValueError: for negative counts, ``unlabeled > cines`` or a bad seed, size, frame count or geometry.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    for name, value in (("cines", cines), ("images", images), ("dicom_images", dicom_images), ("unlabeled", unlabeled)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if unlabeled > cines:
        raise ValueError(f"unlabeled ({unlabeled}) cannot exceed the number of cines ({cines})")
    if geometry not in ("sector", "linear"):
        raise ValueError(f"geometry must be 'sector' or 'linear', got {geometry!r}")
    out = Path(out_dir)
    final = out / "labels" / "final"
    items = []
    plan = [("cine", i) for i in range(cines)] + [("image", i) for i in range(images)]
    plan += [("imagedcm", i) for i in range(dicom_images)]
    for kind, i in plan:
        item_id = f"{kind}_{i:03d}"
        entropy = [int(seed), _KIND_CODES[kind], i]
        targets = ("chamber",) if i % 2 == 0 else ("lesion",)
        n = frames if kind == "cine" else 1
        cine = simulate_cine(n, size, geometry, targets=targets, seed=np.random.SeedSequence(entropy))
        box = _fan_box(cine)
        freq_khz = int(round(cine.config.center_frequency_mhz * 1000))
        record = {"id": item_id, "kind": kind, "seed_entropy": entropy, "targets": list(targets)}
        labeled = not (kind == "cine" and i >= cines - unlabeled)
        label_dir = final if labeled else out / "truth"
        if kind == "cine":
            image_path = write_us_cine(
                out / f"{item_id}.dcm", cine.frames_tyx(), cine.pixel_mm, cine.frame_time_ms,
                synthetic_identity(seed, item_id, "Synthetic B-mode cine", "chamber" in targets), box, freq_khz,
            )
            label_path = write_nifti(label_dir / f"{item_id}.nii.gz", cine.label, _label_affine(cine.pixel_mm))
        elif kind == "imagedcm":
            image_path = write_us_image(
                out / f"{item_id}.dcm", cine.image[:, :, 0].T, cine.pixel_mm,
                synthetic_identity(seed, item_id, "Synthetic B-mode image", "chamber" in targets), box, freq_khz,
            )
            label_path = write_nifti(label_dir / f"{item_id}.nii.gz", cine.label[:, :, 0], _label_affine(cine.pixel_mm))
        else:
            image_path = write_png(out / f"{item_id}.png", cine.image[:, :, 0], mode="labels")
            label_path = write_png(label_dir / f"{item_id}.png", cine.label[:, :, 0], mode="labels")
        if not labeled:  # a label left by an earlier run would make the study look labelled
            for stale in final.glob(f"{item_id}.*"):
                stale.unlink()
        record.update(
            image=image_path.relative_to(out).as_posix(),
            label=label_path.relative_to(out).as_posix() if labeled else None,
            truth_label=label_path.relative_to(out).as_posix(),
            labeled=labeled,
            region_box=list(box),
            **cine.describe(),
        )
        record.pop("seed", None)
        items.append(record)
        if progress is not None:
            progress(item_id)
    manifest = {
        "generator": "usseg_models.data.synthetic",
        "seed": int(seed),
        "settings": {
            "frames": frames, "cines": cines, "images": images, "dicom_images": dicom_images, "size": size,
            "geometry": geometry, "unlabeled": unlabeled,
        },
        "label_values": {str(k): v for k, v in LABEL_VALUES.items()},
        "conventions": {
            "arrays": "labels are (X, Y[, T]) with X = columns, Y = rows (docs/DESIGN.md)",
            "centre_px": "(x, y) = (column, row) of the programmed ellipse centre, pixel centres at integers",
            "centre_mm": "(x, z): lateral and depth in the probe frame (sector: from the apex), mm",
            "semi_axes_mm": "(a, b) of the ellipse before its rotation by rotation_rad",
            "area_px": "exact ellipse area pi a b / pixel_mm^2 (the mask counts pixel centres inside it)",
            "motion": "closed forms in usseg_models/data/synthetic_targets.py; t = frame index",
        },
        "items": items,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    logger.info(
        "wrote %d cines (%d unlabelled), %d PNG and %d DICOM images to %s", cines, unlabeled, images, dicom_images, out
    )
    return manifest
