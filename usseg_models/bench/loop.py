"""``usseg bench loop``: the annotation loop's learning curves, measured against a real server over HTTP.

A simulated annotator drives a private MONAI Label server running this project's app (started on 127.0.0.1, as a
user would start it) on a folder of clips with masks:

(a) **refinement curve** — for ``k`` corrected frames spread evenly over a clip (``k = 0`` is plain inference),
    the annotator sends the clip and its true masks on those ``k`` frames to ``POST /infer/dsanet_refine`` and the
    Dice of the **uncorrected** frames is recorded with the seconds per request;
(b) **labelling curve** — the annotator submits true labels one clip at a time (``PUT /datastore/label``) with
    auto-retraining after every label; after each training run the Dice on held-out clips is recorded, with
    whether the run published its model (the app publishes only models at least as good on its fixed
    validation set).

Clips: synthetic cines by default (exact truth); ``data`` may be any layout
:func:`usseg_models.data.discovery.discover_clips` reads (for example the real ``vtus_clip0002`` folder). Writes
``refinement.csv``, ``labelling.csv``, ``summary.md`` and ``loop.png`` (Dice against frames labelled).

Examples::

    usseg bench loop --quick --out runs/loop-quick
    usseg bench loop --data ../shared/data/vtus_clip0002 --pretrained base.pt --ks 0,1,3,5 --no-labelling
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

from usseg_models.errors import CheckpointError

__all__ = ["LoopClip", "load_loop_clips", "spread_frames", "write_csv", "refinement_curve", "labelling_curve",
           "run_loop_bench"]

logger = logging.getLogger(__name__)


@dataclass
class LoopClip:
    """One clip of the simulated annotator: grey cine and true masks, both ``(X, Y, T)`` uint8."""

    id: str
    cine: np.ndarray
    truth: np.ndarray


def _grey(cine: np.ndarray) -> np.ndarray:
    from usseg_models.io.conventions import bt601_luma

    return (bt601_luma(cine[..., :3]) if cine.ndim == 4 else cine).astype(np.uint8)


def load_loop_clips(data: str | Path | None, quick: bool = False, count: int = 8, seed: int = 0,
                    frames: int | None = None, size: int | None = None) -> list[LoopClip]:
    """Clips for the loop: from ``data`` (any clip layout the project reads) or synthetic cines.

    Synthetic cines have ``frames`` frames of ``size`` px (default 24 x 128, quick 10 x 64); even ones are
    sector-probe chambers, odd ones linear-probe lesions.
    """
    if data is not None:
        from usseg_models.data.datasets import load_clip_arrays
        from usseg_models.data.discovery import discover_clips

        clips = []
        for record in discover_clips(data):
            cine, label = load_clip_arrays(record)
            clips.append(LoopClip(record.id.replace("/", "_"), _grey(np.asarray(cine)), label.astype(np.uint8)))
        return clips
    from usseg_models.data.synthetic import simulate_cine

    frames = frames or (10 if quick else 24)
    size = size or (64 if quick else 128)
    out = []
    for i in range(count):
        c = simulate_cine(frames, size, "sector" if i % 2 == 0 else "linear",
                          targets=("lesion",) if i % 2 else ("chamber",), seed=seed + 100 + i)
        out.append(LoopClip(f"clip_{i:03d}", c.image.astype(np.uint8), c.label.astype(np.uint8)))
    return out


def spread_frames(num_frames: int, k: int) -> list[int]:
    """``k`` frame indices spread evenly over a clip, away from its ends (``k = 1`` is the middle frame)."""
    if k <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, k + 2)[1:-1]})


def _nifti_bytes(array: np.ndarray) -> bytes:
    import nibabel as nib

    buf = io.BytesIO()
    img = nib.Nifti1Image(array.astype(np.uint8), np.eye(4))
    buf.write(gzip.compress(img.to_bytes()))
    return buf.getvalue()


def _label_from_response(r: requests.Response) -> np.ndarray:
    import nibabel as nib

    if r.status_code != 200:
        raise RuntimeError(f"{r.request.method} {r.url} answered {r.status_code}: {r.text[:300]}")
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(r.content)).dataobj)


def _dice(pred: np.ndarray, truth: np.ndarray, frames: Sequence[int]) -> float:
    from usseg_models.metrics import dice

    return float(dice(pred[..., list(frames)] > 0, truth[..., list(frames)] > 0, frame_axis=-1))


def _infer(url: str, clip: LoopClip, timeout: float) -> np.ndarray:
    r = requests.post(f"{url}/infer/dsanet", params={"output": "image"},
                      files={"file": (f"{clip.id}.nii.gz", _nifti_bytes(clip.cine))},
                      data={"params": json.dumps({"allow_untrained": True})}, timeout=timeout)
    return _label_from_response(r)


def refinement_curve(url: str, clips: Sequence[LoopClip], ks: Sequence[int], max_steps: int | None = None,
                     time_budget_s: float | None = None, timeout: float = 600, progress: bool = True
                     ) -> list[dict[str, Any]]:
    """Rows ``{clip, k, corrected, dice_uncorrected, seconds, steps, stopped_by}`` (see the module docstring)."""
    from tqdm.auto import tqdm

    rows = []
    jobs = [(clip, k) for clip in clips for k in ks]
    for clip, k in tqdm(jobs, desc="refinement", disable=not progress):
        n = clip.cine.shape[2]
        corrected = spread_frames(n, k)
        others = [t for t in range(n) if t not in corrected]
        start = time.perf_counter()
        info: dict[str, Any] = {}
        if not corrected:
            pred = _infer(url, clip, timeout)
        else:
            label = np.zeros_like(clip.truth)
            label[..., corrected] = clip.truth[..., corrected]
            params: dict[str, Any] = {"corrected_frames": corrected}
            if max_steps:
                params["max_steps"] = int(max_steps)
            if time_budget_s:
                params["time_budget_s"] = float(time_budget_s)
            r = requests.post(f"{url}/infer/dsanet_refine", params={"output": "all"},
                              files={"file": (f"{clip.id}.nii.gz", _nifti_bytes(clip.cine)),
                                     "label": ("label.nii.gz", _nifti_bytes(label))},
                              data={"params": json.dumps(params)}, timeout=timeout)
            pred, info = _split_multipart(r)
        seconds = time.perf_counter() - start
        refinement = info.get("refinement", {})
        rows.append({"clip": clip.id, "frames": n, "k": len(corrected), "corrected": " ".join(map(str, corrected)),
                     "dice_uncorrected": round(_dice(pred, clip.truth, others), 4), "seconds": round(seconds, 2),
                     "steps": refinement.get("steps", 0), "stopped_by": refinement.get("stopped_by", "")})
    return rows


def _split_multipart(r: requests.Response) -> tuple[np.ndarray, dict[str, Any]]:
    import nibabel as nib
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    if r.status_code != 200:
        raise RuntimeError(f"POST {r.url} answered {r.status_code}: {r.text[:300]}")
    params, label = {}, None
    for part in MultipartDecoder.from_response(r).parts:
        if b'name="params"' in part.headers.get(b"Content-Disposition", b""):
            params = json.loads(part.content)
        else:
            label = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(part.content)).dataobj)
    if label is None:
        raise RuntimeError("the refinement answer carried no label file")
    return label, params


def _wait_training(url: str, after: str | None, timeout: float) -> dict[str, Any] | None:
    """Wait until a training task other than ``after`` has ended; return it (None if none started)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        r = requests.get(f"{url}/train/", timeout=30)
        task = r.json() if r.status_code == 200 else None
        if task and task.get("id") != after:
            seen = task
            if task.get("status") in ("DONE", "ERROR", "STOPPED"):
                return task
        elif seen is None and time.monotonic() > deadline - timeout + 30:
            return None  # no training was started within 30 s
        time.sleep(1.0)
    raise TimeoutError(f"training did not finish within {timeout} s")


def labelling_curve(url: str, pool: Sequence[LoopClip], heldout: Sequence[LoopClip], timeout: float = 1800,
                    progress: bool = True) -> list[dict[str, Any]]:
    """Rows ``{labelled_clips, frames_labelled, trained, published, dice_heldout, ...}`` (module docstring)."""
    from tqdm.auto import tqdm

    def heldout_dice() -> float:
        return round(float(np.mean([_dice(_infer(url, c, 600), c.truth, range(c.truth.shape[2]))
                                    for c in heldout])), 4)

    rows = [{"labelled_clips": 0, "frames_labelled": 0, "trained": False, "published": False, "version": None,
             "candidate_dice": None, "live_dice": None, "dice_heldout": heldout_dice(), "reason": "initial model"}]
    r = requests.get(f"{url}/train/", timeout=30)
    last_task = r.json().get("id") if r.status_code == 200 else None
    frames = 0
    for i, clip in enumerate(tqdm(pool, desc="labelling", disable=not progress), start=1):
        r = requests.put(f"{url}/datastore/label", params={"image": clip.id, "tag": "final"},
                         files={"label": (f"{clip.id}.nii.gz", _nifti_bytes(clip.truth))},
                         data={"params": json.dumps({})}, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"PUT /datastore/label for {clip.id} answered {r.status_code}: {r.text[:300]}")
        frames += int(clip.truth.shape[2])
        task = _wait_training(url, last_task, timeout)
        last_task = task.get("id") if task else last_task
        stats = requests.get(f"{url}/info/", timeout=30).json()["train_stats"].get("dsanet", {})
        rows.append({"labelled_clips": i, "frames_labelled": frames, "trained": bool(task and
                                                                               task.get("status") == "DONE"),
                     "published": bool(stats.get("publish")), "version": stats.get("version"),
                     "candidate_dice": stats.get("candidate_dice"), "live_dice": stats.get("live_dice"),
                     "dice_heldout": heldout_dice(), "reason": stats.get("reason", task.get("status") if task else
                                                                          "no training started")})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plot(path: Path, refinement: list[dict[str, Any]], labelling: list[dict[str, Any]], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for clip in sorted({r["clip"] for r in refinement}):
        pts = sorted((r["k"], r["dice_uncorrected"]) for r in refinement if r["clip"] == clip)
        ax.plot(*zip(*pts), "o-", alpha=0.5, label=clip)
    ks = sorted({r["k"] for r in refinement})
    if ks:
        ax.plot(ks, [np.mean([r["dice_uncorrected"] for r in refinement if r["k"] == k]) for k in ks], "k-", lw=2,
                label="mean")
    ax.set(xlabel="corrected frames in the clip", ylabel="Dice of the uncorrected frames", ylim=(0, 1),
           title="(a) refinement")
    ax.legend(fontsize=7)
    ax = axes[1]
    if labelling:
        xs = [r["frames_labelled"] for r in labelling]
        ax.plot(xs, [r["dice_heldout"] for r in labelling], "o-")
        for r in labelling:
            if r["labelled_clips"] and not r["published"]:
                ax.annotate("not published", (r["frames_labelled"], r["dice_heldout"]), fontsize=7)
    else:
        ax.text(0.5, 0.5, "not run (--no-labelling)", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="frames labelled (submitted clips)", ylabel="Dice on held-out clips", ylim=(0, 1),
           title="(b) labelling with auto-retrain")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _summary(refinement: list[dict[str, Any]], labelling: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Annotation loop benchmark", "", "```", json.dumps(meta, indent=1), "```", ""]
    if refinement:
        lines += ["## (a) Refinement: Dice of the uncorrected frames", "",
                  "| corrected frames k | mean Dice | min | max | mean seconds/request | clips |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for k in sorted({r["k"] for r in refinement}):
            rs = [r for r in refinement if r["k"] == k]
            d = [r["dice_uncorrected"] for r in rs]
            lines.append(f"| {k} | {np.mean(d):.3f} | {min(d):.3f} | {max(d):.3f} | "
                         f"{np.mean([r['seconds'] for r in rs]):.1f} | {len(rs)} |")
        lines.append("")
    if labelling:
        lines += ["## (b) Labelling: Dice on held-out clips after each submitted clip", "",
                  "| clips labelled | frames labelled | trained | published | held-out Dice | reason |",
                  "|---:|---:|:---:|:---:|---:|---|"]
        for r in labelling:
            lines.append(f"| {r['labelled_clips']} | {r['frames_labelled']} | {r['trained']} | {r['published']} | "
                         f"{r['dice_heldout']:.3f} | {r['reason']} |")
        lines.append("")
    return "\n".join(lines)


def run_loop_bench(
    out_dir: str | Path,
    data: str | Path | None = None,
    quick: bool = False,
    config: str = "small",
    pretrained: str | Path | None = None,
    ks: Sequence[int] = (0, 1, 3, 5),
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    labelling: bool = True,
    heldout: int = 2,
    epochs: int | None = None,
    device: str | None = None,
    progress: bool = True,
    frames: int | None = None,
    size: int | None = None,
    count: int | None = None,
) -> dict[str, Any]:
    """Start a private server, run both curves, write the outputs; returns paths and the rows."""
    from usseg_models.serving.launcher import MonaiLabelServer, prepare_app_dir

    if pretrained and not Path(pretrained).is_file():  # else the server dies at start-up with a page of traceback
        raise CheckpointError(f"--pretrained {pretrained}: no such checkpoint file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = load_loop_clips(data, quick=quick, count=count or (4 if quick else 8), frames=frames, size=size)
    if quick:
        ks = [k for k in ks if k <= 3][:3] or [0, 1]
        max_steps = max_steps or 3
        # bounded by steps, not by the server's 1.5 s default, so a quick run gives the same answer on a busy machine
        time_budget_s = time_budget_s or 120.0
    eval_clips = clips[:heldout] if labelling and len(clips) > heldout else clips
    pool = clips[heldout:] if labelling and len(clips) > heldout else []
    if quick:
        pool = pool[:2]
    conf = {"models": "dsanet", "config": config, "untrained_infer": "allow", "bootstrap_min_labels": "0",
            "auto_retrain_after": "1" if pool else "0", "max_epochs": str(epochs or (1 if quick else 10)),
            "val_split": "0.34"}
    if time_budget_s:
        conf["refine_time_budget_s"] = str(time_budget_s)
    if max_steps:
        conf["refine_max_steps"] = str(max(int(max_steps), 1))
    if pretrained:
        conf["pretrained_path"] = str(Path(pretrained).resolve())
    if device:
        conf["device"] = device
    with tempfile.TemporaryDirectory(prefix="usseg_bench_loop_") as tmp:
        tmp_path = Path(tmp)
        studies = tmp_path / "studies"
        studies.mkdir()
        for clip in pool:
            (studies / f"{clip.id}.nii.gz").write_bytes(_nifti_bytes(clip.cine))
        server = MonaiLabelServer(prepare_app_dir(tmp_path / "app"), studies, conf=conf,
                                  env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false"})
        start = time.perf_counter()
        url = server.start(timeout=600)
        try:
            refine_rows = refinement_curve(url, eval_clips, ks, max_steps, time_budget_s, progress=progress)
            label_rows = labelling_curve(url, pool, eval_clips, progress=progress) if pool else []
        finally:
            server.stop()
    meta = {"data": str(data) if data else "synthetic", "quick": quick, "config": config,
            "pretrained": str(pretrained) if pretrained else None, "clips": len(clips),
            "eval_clips": [c.id for c in eval_clips], "pool_clips": [c.id for c in pool],
            "max_steps": max_steps, "time_budget_s": time_budget_s, "epochs": conf["max_epochs"],
            "seconds": round(time.perf_counter() - start, 1)}
    write_csv(out / "refinement.csv", refine_rows)
    write_csv(out / "labelling.csv", label_rows)
    (out / "summary.md").write_text(_summary(refine_rows, label_rows, meta))
    plot = _plot(out / "loop.png", refine_rows, label_rows, f"annotation loop ({meta['data']}, {config})")
    return {"refinement": refine_rows, "labelling": label_rows, "summary": str(out / "summary.md"),
            "plot": str(plot), "meta": meta}
