"""Per-structure Dice (uncorrected frames) of propagation vs copy-nearest on synthetic 3-structure clips.

Run from the repository root: ``python scripts/refine_structures_table.py`` (about 30 s on 2 CPU cores); prints the
Markdown table of ``docs/results.md`` ("Refinement with several structures").
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from structures_clip import LABELS, three_structure_clip

from usseg_models.inference.refine import RefineSettings, refine_from_corrections
from usseg_models.labels import parse_labels
from usseg_models.propagation.anchors import copy_nearest

labels = parse_labels(LABELS)
T = 32
def spaced(k): return sorted({int(round((i + 0.5) * T / k)) for i in range(k)})
def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2 * np.logical_and(a, b).sum() / s
rows = {}
for seed in range(4):
    cine, truth = three_structure_clip(T, 96, seed)
    for k in (1, 3, 5):
        frames = spaced(k)
        fixes = {t: truth[..., t] for t in frames}
        prop = refine_from_corrections(None, cine, fixes, 64, RefineSettings(mode="propagate"), labels=labels).masks
        copy = np.zeros_like(truth)
        for v in labels.values:
            copy[copy_nearest({t: (m == v) for t, m in fixes.items()}, T) > 0] = v
        others = [t for t in range(T) if t not in frames]
        for name, v in zip(labels.names, labels.values):
            for meth, out in (("propagation", prop), ("copy-nearest", copy)):
                d = np.mean([dice(out[..., t] == v, truth[..., t] == v) for t in others])
                rows.setdefault((meth, name, k), []).append(d)
print("| method | structure | k=1 | k=3 | k=5 |\n|---|---|---:|---:|---:|")
for meth in ("propagation", "copy-nearest"):
    for name in labels.names:
        print(f"| {meth} | {name} | " + " | ".join(f"{np.mean(rows[(meth, name, k)]):.3f}" for k in (1, 3, 5)) + " |")
    means = [np.mean([np.mean(rows[(meth, n, k)]) for n in labels.names]) for k in (1, 3, 5)]
    print(f"| {meth} | mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")
