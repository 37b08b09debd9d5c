"""Per-structure propagation on real echo frames: CAMUS ED → ES of each test view, against copying the ED mask.

``camus_edes`` has only the ED and the ES frame of each view, so the "clip" is those two frames: the ED label is the
one corrected frame, `{"mode": "propagate"}` carries every structure to ES by optical flow, and the ES truth scores
it (Dice per structure). Copying the ED mask is the learning-free anchor (Slicer's "Fill between slices" copies an
end mask too). ED and ES are 10–20 frames apart, far more motion than between neighbouring frames of a cine.

Run from the repository root: ``python scripts/refine_structures_camus.py [CAMUS_EDES_DIR]`` (about a minute).
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from usseg_models.inference.refine import RefineSettings, refine_from_corrections
from usseg_models.labels import parse_labels

root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/camus_edes")
labels = parse_labels("1:LV,2:MYO,3:LA")


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).T  # rows × cols → the reader's (X, Y)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


scores = {m: {n: [] for n in labels.names} for m in ("propagation", "copy ED mask")}
for ed in sorted((root / "test" / "images").glob("*_ED.png")):
    es = ed.with_name(ed.name.replace("_ED", "_ES"))
    lab = root / "test" / "labels_clean"
    cine = np.stack([load(ed), load(es)], axis=-1)
    ed_label, es_label = load(lab / ed.name), load(lab / es.name)
    out = refine_from_corrections(None, cine, {0: ed_label}, 64, RefineSettings(mode="propagate"), labels=labels)
    for name, v in zip(labels.names, labels.values):
        scores["propagation"][name].append(dice(out.masks[..., 1] == v, es_label == v))
        scores["copy ED mask"][name].append(dice(ed_label == v, es_label == v))
n = len(scores["propagation"]["LV"])
print(f"{n} views (CAMUS test split), Dice at ES per structure\n")
print("| method | LV | MYO | LA | mean |\n|---|---:|---:|---:|---:|")
for method, per in scores.items():
    means = [float(np.mean(per[name])) for name in labels.names]
    print(f"| {method} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {np.mean(means):.3f} |")
