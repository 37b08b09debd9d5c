"""Interactive speed of refinement through a real server: ``POST /infer/dsanet_refine`` per mode, split by part.

A synthetic ``frames``-frame cine (default 100 frames of 256 × 256, a moving target with exact masks) is uploaded
as a US multi-frame DICOM with a label holding the truth on ``k`` corrected frames, as a user's client would send
it after correcting frames. For each mode (``propagate``, ``hybrid``) the **first** request of the clip is timed on
its own (the server computes the clip's flows and backbone features then), followed by ``repeats`` requests with
other corrected frames — the user correcting one more frame — which reuse them. Printed per mode: client seconds
(upload to the last byte of the answer) and the server's split: ``read`` (upload stored + cine decoded and checked),
``flow``, ``propagate``, ``features``, ``adapt``, ``predict``, ``fuse`` (from ``params.refinement.timings``) and
``write`` (label written); ``other`` is the rest of the client's wait (HTTP, multipart, label parsing).

Examples::

    usseg bench server --refine                         # private server, small configuration, CPU
    usseg bench server --refine --url http://127.0.0.1:8000 --repeats 5
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from usseg_models.bench.server import answer_params, private_server

__all__ = ["bench_refine_server", "format_refine_results"]

PARTS = ("read", "flow", "propagate", "features", "adapt", "predict", "fuse", "write", "other")


def _write_clip(folder: Path, frames: int, size: int, seed: int) -> tuple[Path, np.ndarray]:
    from usseg_models.data.dicom_writer import synthetic_identity, write_us_cine
    from usseg_models.data.synthetic import simulate_cine

    cine = simulate_cine(num_frames=frames, size=size, seed=seed)
    path = write_us_cine(folder / "clip.dcm", cine.frames_tyx(), cine.pixel_mm, cine.frame_time_ms,
                         synthetic_identity(seed, "bench_refine"))
    return path, np.asarray(cine.label, np.uint8)


def _label_file(path: Path, truth: np.ndarray, frames: list[int]) -> Path:
    import nibabel as nib

    label = np.zeros_like(truth)
    label[..., frames] = truth[..., frames]
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(path))
    return path


def _refine_once(url: str, clip: Path, label: Path, params: dict[str, Any], timeout: float) -> dict[str, float]:
    start = time.perf_counter()
    with open(clip, "rb") as f, open(label, "rb") as g:
        r = requests.post(f"{url}/infer/dsanet_refine", params={"output": "all"},
                          files={"file": (clip.name, f), "label": (label.name, g)},
                          data={"params": json.dumps(params)}, timeout=timeout)
    body = r.content
    seconds = time.perf_counter() - start
    answer = answer_params(r, body, "POST /infer/dsanet_refine")
    latencies, refinement = answer.get("latencies", {}), answer.get("refinement", {})
    split = {k: float(v) for k, v in refinement.get("timings", {}).items()}
    split["read"] = float(latencies.get("pre", 0.0))
    split["write"] = float(latencies.get("post", 0.0))
    split["other"] = max(0.0, seconds - sum(split.values()))
    split["total"] = seconds
    split["steps"] = float(refinement.get("steps", 0))
    return split


def bench_refine_server(config: str = "small", frames: int = 100, size: int = 256, k: int = 3, repeats: int = 3,
                        modes: tuple[str, ...] = ("propagate", "hybrid"), url: str | None = None,
                        device: str | None = None, timeout: float = 600.0) -> dict[str, Any]:
    """Time refinement requests per mode (see the module docstring); returns ``{mode: {"first": split,
    "repeat": median split}}`` plus the run's description."""
    if frames < k + repeats + 2 or k < 1 or repeats < 1:
        raise ValueError(f"need k >= 1, repeats >= 1 and frames > k + repeats + 1; got {k}, {repeats}, {frames}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="usseg_bench_refine_") as tmp:
        tmp_path = Path(tmp)
        clip, truth = _write_clip(tmp_path, frames, size, seed=0)
        with private_server(tmp_path, config, device, url) as url:
            base = [round((i + 0.5) * frames / k) for i in range(k)]
            for mode in modes:
                first = _refine_once(url, clip, _label_file(tmp_path / "l0.nii.gz", truth, base),
                                     {"corrected_frames": base, "mode": mode}, timeout)
                runs = []
                for r in range(repeats):  # one more corrected frame each time, as a user editing
                    extra = sorted(set(base) | {1 + r})
                    runs.append(_refine_once(url, clip, _label_file(tmp_path / f"l{r + 1}.nii.gz", truth, extra),
                                             {"corrected_frames": extra, "mode": mode}, timeout))
                median = {p: statistics.median(run.get(p, 0.0) for run in runs) for p in (*PARTS, "total", "steps")}
                results[mode] = {"first": first, "repeat": median}
    return {"benchmark": "server POST /infer/dsanet_refine", "config": config, "frames": frames, "size": size,
            "k": k, "repeats": repeats, "url": url, "modes": results}


def format_refine_results(info: dict[str, Any]) -> str:
    """A table: one row per mode and request kind, columns the parts in seconds."""
    head = f"{info['benchmark']} [{info['config']}] {info['frames']} frames of {info['size']} px, k = {info['k']}"
    lines = [head, "| mode | request | " + " | ".join(PARTS) + " | total s | steps |",
             "|---|---|" + "---:|" * (len(PARTS) + 2)]
    for mode, runs in info["modes"].items():
        for kind in ("first", "repeat"):
            split = runs[kind]
            label = "first of the clip" if kind == "first" else f"median of {info['repeats']} edits"
            cells = " | ".join(f"{split.get(p, 0.0):.3f}" for p in PARTS)
            lines.append(f"| {mode} | {label} | {cells} | {split['total']:.3f} | {int(split.get('steps', 0))} |")
    return "\n".join(lines)
