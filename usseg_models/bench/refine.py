"""``usseg bench refine``: the product's refinement against the learning-free anchors, from k corrected frames.

A user corrects ``k`` frames of a clip; the rest is filled in either by the product
(:func:`usseg_models.inference.refine.refine_from_corrections`, each of its modes asked for by name: ``hybrid`` — the
default —, ``propagate``, ``adapt``) or by what the user has for free (:mod:`usseg_models.propagation.anchors`:
``copy`` the nearest corrected mask, Slicer's ``fill`` between slices, OpenCV DIS ``flow``). For every clip,
placement, ``k`` and method this measures, on the **uncorrected** frames only:

- ``dice`` / ``iou``: mean per-frame Dice and IoU (:func:`usseg_models.metrics.per_frame_metrics`, empty masks
  as there); ``dice_pooled``: the Dice of all uncorrected frames taken as one volume (what the anchor table of
  the refinement issue reports; it weighs frames by their mask area);
- Dice against the distance (frames) to the nearest corrected frame, in :data:`DISTANCE_BINS`;
- temporal stability of the whole predicted clip (:func:`usseg_models.metrics.temporal_stability`):
  ``consecutive_dice`` of the prediction, of the truth, and ``stability_gap`` = mean |difference|;
- ``seconds``: wall clock of the method (the flow anchor includes its flows; ITK and OpenCV are loaded before the
  first run, the product's modes are called without a cache, as on a clip's first request).

Placements (:func:`placed_frames`): ``spaced`` — frames ``round((i + 0.5) · T / k)``, ``i = 0..k-1`` (halves
rounded up); ``bunched`` — ``k`` consecutive frames in the middle of the clip.

The base model of the product's modes: ``pretrained`` (any usseg DSANet checkpoint), else the app's bootstrap
recipe (DSANet ``small`` trained on the bundled sample studies with the first-start settings of
``monailabel_app/lib/bootstrap.py``), cached as ``out/base.pt`` and reused while its recipe is the same;
``untrained`` uses seeded random weights. Runs with anchors only train nothing.

A product mode the installed :mod:`usseg_models.inference.refine` does not offer is skipped (logged, listed in
``summary.md``): before ``RefineSettings`` had a ``mode`` the only behaviour is the adaptation, run as ``adapt``.

Outputs in ``out``: ``refine.csv`` (one row per measurement), ``refine_distance.csv`` (one row per distance bin),
``summary.md`` (per placement, a table of methods by ``k``: mean over clips) and ``refine.png`` (Dice against
``k``, a line per method, a panel per placement). Deterministic for the same inputs and seed, except that a run
of a product mode stopped by its time budget (``stopped_by`` = ``time``) depends on the machine's speed.

Examples::

    usseg bench refine --quick --out runs/refine-quick
    usseg bench refine --data ../shared/data/vtus_clip0002 --methods copy,fill,flow --ks 1,3,5,9
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from usseg_models.errors import UssegError

__all__ = ["PLACEMENTS", "METHODS", "DISTANCE_BINS", "SAMPLE_STUDIES", "product_modes", "placed_frames",
           "distance_to_corrections", "base_model", "run_refine_bench"]

logger = logging.getLogger(__name__)

PLACEMENTS = ("spaced", "bunched")
PRODUCT_MODES = ("hybrid", "propagate", "adapt")
METHODS = (*PRODUCT_MODES, "copy", "fill", "flow")
DEFAULT_KS = (1, 2, 3, 5, 9)
QUICK_KS = (1, 3)
# (label, nearest distance low, high); None = no upper end
DISTANCE_BINS = (("1", 1, 1), ("2-3", 2, 3), ("4-7", 4, 7), ("8-15", 8, 15), ("16+", 16, None))
SAMPLE_STUDIES = Path(__file__).resolve().parents[2] / "sample-data" / "studies"
# the app's first-start training of a cine model: monailabel_app/lib/bootstrap.py DEFAULT_BOOTSTRAP_EPOCHS["cine"]
# and DEFAULT_BOOTSTRAP_LR (copied, not imported: the library does not import the app), with the app's defaults
# batch 2 and validation split 0.2 (monailabel_app/lib/configs/base.py)
BOOTSTRAP_EPOCHS = 20
BOOTSTRAP_LR = 1e-3
QUICK_EPOCHS = 1
FLOW_PRESET = "medium"  # the flow anchor: plain OpenCV DIS on the raw frames (the product's propagation differs)
QUICK_TIME_BUDGET_S = 300.0  # quick runs are bounded by their 3 steps, so that their output does not depend on load


def _names(text: str | Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    """Comma-separated names (or a list) checked against ``allowed``; raises :class:`UssegError` naming the bad one."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if str(n).strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UssegError(f"--{what} {','.join(names) or '(empty)'}: choose from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def _settings_have_mode() -> bool:
    from usseg_models.inference.refine import RefineSettings

    return "mode" in {f.name for f in dataclasses.fields(RefineSettings)}


def product_modes() -> list[str]:
    """The modes :func:`refine_from_corrections` offers now: ``REFINE_MODES`` once ``RefineSettings`` has ``mode``,
    else adapt."""
    from usseg_models.inference import refine

    return list(getattr(refine, "REFINE_MODES", PRODUCT_MODES)) if _settings_have_mode() else ["adapt"]


def placed_frames(num_frames: int, k: int, placement: str) -> list[int]:
    """``k`` corrected frames of a ``num_frames`` clip: ``spaced`` (``round((i + 0.5) T / k)``) or ``bunched``."""
    if not 1 <= k <= num_frames:
        raise ValueError(f"k must be in 1..{num_frames}, got {k}")
    if placement == "spaced":
        return [int(np.floor((i + 0.5) * num_frames / k + 0.5)) for i in range(k)]
    if placement == "bunched":
        start = (num_frames - k) // 2
        return list(range(start, start + k))
    raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")


def distance_to_corrections(num_frames: int, frames: Sequence[int]) -> np.ndarray:
    """``(T,)`` frames from each frame to the nearest corrected frame (0 on corrected frames)."""
    t = np.arange(num_frames)[:, None]
    return np.abs(t - np.asarray(frames)[None, :]).min(axis=1)


def _bootstrap_recipe(config: str, epochs: int, seed: int, data: Path) -> dict[str, Any]:
    return {"config": config, "epochs": int(epochs), "lr": BOOTSTRAP_LR, "batch_size": 2, "val_fraction": 0.2,
            "seed": int(seed), "data": str(data)}


def _train_base(path: Path, recipe: dict[str, Any], device: str) -> None:
    """Train DSANet with the bootstrap recipe and save it to ``path`` (the recipe in its ``extra``)."""
    from usseg_models.networks.checkpoint import load_checkpoint, save_checkpoint
    from usseg_models.training import train_dsanet

    logger.info("training the base model (the app's bootstrap recipe: %s)", recipe)
    with tempfile.TemporaryDirectory(prefix="usseg_bench_refine_") as tmp:
        result = train_dsanet(recipe["data"], tmp, config=recipe["config"], epochs=recipe["epochs"],
                              batch_size=recipe["batch_size"], lr=recipe["lr"], device=device,
                              val_fraction=recipe["val_fraction"], seed=recipe["seed"], progress=False)
        checkpoint = result.get("best_checkpoint") or result.get("last_checkpoint")
        model, payload = load_checkpoint(checkpoint)
    save_checkpoint(path, model, "dsanet", payload["config"], payload.get("overrides"),
                    extra={"bench_base": recipe, "best_dice": result.get("best_dice")})


def base_model(out: Path, pretrained: str | Path | None = None, untrained: bool = False, config: str = "small",
               epochs: int | None = None, quick: bool = False, seed: int = 0, device: str = "cpu",
               base_data: str | Path | None = None) -> tuple[Any, int, str]:
    """``(model, spatial_size, description)`` of the product's modes (see the module docstring)."""
    import torch

    from usseg_models.networks.checkpoint import load_checkpoint, read_checkpoint
    from usseg_models.networks.factory import build_network, network_spatial_size

    if untrained:
        torch.manual_seed(seed)
        return build_network("dsanet", config).to(device), network_spatial_size("dsanet", config), "random weights"
    if pretrained:
        model, payload = load_checkpoint(pretrained, device)
        return model, int(payload.get("spatial_size") or network_spatial_size("dsanet", payload["config"])), \
            str(pretrained)
    data = Path(base_data) if base_data else SAMPLE_STUDIES
    if not data.is_dir():
        raise UssegError(f"no sample studies at {data} to train the base model on: make them with `usseg sample-data "
                         "DIR`, or pass --pretrained or --untrained")
    recipe = _bootstrap_recipe(config, epochs or (QUICK_EPOCHS if quick else BOOTSTRAP_EPOCHS), seed, data)
    path = out / "base.pt"
    cached = path.is_file() and read_checkpoint(path).get("extra", {}).get("bench_base") == recipe
    if not cached:
        _train_base(path, recipe, device)
    else:
        logger.info("base model: %s (cached, same recipe)", path)
    model, payload = load_checkpoint(path, device)
    how = f"bootstrap recipe ({recipe['epochs']} epochs on {data.name}){', cached' if cached else ''}: {path}"
    return model, int(payload["spatial_size"]), how


def _run_method(method: str, clip, corrected: dict[int, np.ndarray], ctx: dict[str, Any]) -> tuple[np.ndarray, dict]:
    """Masks ``(X, Y, T)`` of one method and its extra columns (``steps``, ``stopped_by``)."""
    from usseg_models.propagation import anchors

    n = clip.cine.shape[2]
    if method == "copy":
        return anchors.copy_nearest(corrected, n), {}
    if method == "fill":
        return anchors.fill_between_slices(corrected, n), {}
    if method == "flow":
        return anchors.flow_anchor(clip.cine, corrected, ctx["flows"][clip.id]), {}
    from usseg_models.inference.refine import RefineSettings, refine_from_corrections

    kwargs = {k: v for k, v in ctx["settings"].items() if v is not None}
    if ctx["has_mode"]:
        kwargs["mode"] = method
    result = refine_from_corrections(ctx["model"], clip.cine, corrected, ctx["spatial_size"],
                                     settings=RefineSettings(**kwargs),
                         device=ctx["device"])
    summary = result.summary()
    return result.masks, {"steps": summary.get("steps", ""), "stopped_by": summary.get("stopped_by", "")}


def _score(pred: np.ndarray, truth: np.ndarray, frames: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Columns of one measurement and its distance-bin rows (see the module docstring)."""
    from usseg_models.metrics import dice, per_frame_metrics, temporal_stability

    n = truth.shape[2]
    others = np.array([t for t in range(n) if t not in frames])
    p, g = pred[..., others] > 0, truth[..., others] > 0
    per_frame = per_frame_metrics(p, g, frame_axis=-1)
    pooled = dice(p.reshape(p.shape[0], -1), g.reshape(g.shape[0], -1), frame_axis=None)  # all frames as one
    stable = temporal_stability(pred > 0, truth > 0, frame_axis=-1)
    row = {"dice": round(float(per_frame["dice"].mean()), 4), "iou": round(float(per_frame["iou"].mean()), 4),
           "dice_pooled": round(pooled, 4), "consecutive_dice": round(stable["pred_consecutive_dice"], 4),
           "consecutive_dice_truth": round(stable["true_consecutive_dice"], 4),
           "stability_gap": round(stable["mean_abs_difference"], 4)}
    distance = distance_to_corrections(n, frames)[others]
    bins = []
    for label, lo, hi in DISTANCE_BINS:
        sel = (distance >= lo) & (distance <= (hi if hi is not None else n))
        if sel.any():
            bins.append({"distance": label, "frames_in_bin": int(sel.sum()),
                         "dice": round(float(per_frame["dice"][sel].mean()), 4)})
    return row, bins


def _warm_up(methods: list[str]) -> None:
    """Load ITK's interpolator, OpenCV and torch's optimiser machinery once before timing: their first use costs
    seconds (ITK: 10-20 s; the first optimiser about 1 s), as the server pays them at start-up."""
    from usseg_models.inference.adapt import warm_up
    from usseg_models.propagation import anchors

    warm_up()

    square = np.zeros((16, 16), np.uint8)
    square[4:12, 4:12] = 1
    if "fill" in methods:
        anchors.fill_between_slices({0: square, 2: square}, 3)
    if "flow" in methods:
        anchors.flow_anchor(np.repeat(square[..., None] * 200, 3, axis=-1), {0: square})


def _applicable(method: str, frames: list[int]) -> bool:
    """Fill between slices has nothing to interpolate with one corrected frame or only consecutive ones."""
    return method != "fill" or frames[-1] - frames[0] + 1 > len(frames)


def _jobs(clips, placements: list[str], ks: list[int]) -> list[tuple[Any, str, int]]:
    jobs = []
    for clip in clips:
        n = clip.cine.shape[2]
        for placement in placements:
            for k in ks:
                if k >= n:
                    logger.warning("%s: k = %d leaves no uncorrected frame of %d; skipped", clip.id, k, n)
                    continue
                jobs.append((clip, placement, k))
    return jobs


def _table(rows: list[dict[str, Any]], placement: str, methods: list[str], ks: list[int], key: str, fmt: str) -> list:
    lines = ["| method | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---:|" * len(ks)]
    for method in methods:
        cells = []
        for k in ks:
            rs = [r for r in rows if r["placement"] == placement and r["method"] == method and r["k"] == k]
            ok = [r[key] for r in rs if r["applicable"]]
            cells.append(format(float(np.mean(ok)), fmt) if ok else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def _summary(rows: list[dict[str, Any]], bins: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["# Refinement from k corrected frames: the product against the learning-free anchors", "",
             "Scores of the **uncorrected** frames, mean over clips. `–`: not applicable (Fill between slices with "
             "one corrected frame or only consecutive ones has no gap to fill; its output is then the copy's).", "",
             "```", json.dumps(meta, indent=1), "```", ""]
    for placement in dict.fromkeys(r["placement"] for r in rows):
        ks = sorted({r["k"] for r in rows if r["placement"] == placement})
        lines += [f"## {placement} corrected frames", "", "Dice, mean per frame:", ""]
        lines += _table(rows, placement, methods, ks, "dice", ".3f")
        lines += ["Dice of the uncorrected frames pooled as one volume:", ""]
        lines += _table(rows, placement, methods, ks, "dice_pooled", ".3f")
        lines += ["Seconds per run:", ""]
        lines += _table(rows, placement, methods, ks, "seconds", ".2f")
        labels = [b[0] for b in DISTANCE_BINS]
        lines += ["Dice by distance to the nearest corrected frame (frames; mean over k and clips):", "",
                  "| method | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        for method in methods:
            cells = []
            for label in labels:
                d = [b["dice"] for b in bins if b["placement"] == placement and b["method"] == method
                     and b["distance"] == label and b["applicable"]]
                cells.append(f"{np.mean(d):.3f}" if d else "–")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plot(path: Path, rows: list[dict[str, Any]], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placements = list(dict.fromkeys(r["placement"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(placements), figsize=(5 * len(placements), 4), squeeze=False)
    for ax, placement in zip(axes[0], placements):
        for i, method in enumerate(methods):  # one colour per method in every panel
            rs = [r for r in rows if r["placement"] == placement and r["method"] == method and r["applicable"]]
            ks = sorted({r["k"] for r in rs})
            if ks:
                ax.plot(ks, [np.mean([r["dice"] for r in rs if r["k"] == k]) for k in ks], "o-", color=f"C{i}",
                        label=method)
        ax.set(xlabel="corrected frames k", ylabel="Dice of the uncorrected frames", ylim=(0, 1),
               title=f"{placement} corrections")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_refine_bench(
    out_dir: str | Path,
    data: str | Path | None = None,
    quick: bool = False,
    ks: Sequence[int] | None = None,
    placements: str | Sequence[str] = PLACEMENTS,
    methods: str | Sequence[str] = METHODS,
    pretrained: str | Path | None = None,
    untrained: bool = False,
    config: str = "small",
    epochs: int | None = None,
    base_data: str | Path | None = None,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    count: int | None = None,
    frames: int | None = None,
    size: int | None = None,
) -> dict[str, Any]:
    """Measure every (clip, placement, k, method), write the outputs; returns their paths, the rows and ``meta``.

    Args:
        out_dir: output folder (created; ``base.pt`` is cached there).
        data: clips with masks (any layout :func:`usseg_models.bench.loop.load_loop_clips` reads); default:
            synthetic cines (``count`` of ``frames`` frames of ``size`` px; quick: one clip of 10 x 64).
        quick: one small synthetic clip, ``ks`` 1 and 3, a one-epoch base, 3 refinement steps (bounded by steps,
            not time).
        ks, placements, methods: what to measure (see the module docstring); ``None`` ks: 1, 2, 3, 5, 9.
        pretrained, untrained, config, epochs, base_data: the base model (:func:`base_model`).
        max_steps, time_budget_s: refinement budget per run (``None``: the product's defaults; quick: 3 steps and
            :data:`QUICK_TIME_BUDGET_S`).
        device: torch device of the product's modes; seed: seeds the base, the refinement and the clips.

    Raises:
        UssegError: bad names, a missing or unreadable checkpoint, unreadable or empty ``data`` (the CLI prints
            one line and exits 2).
    """
    from tqdm.auto import tqdm

    from usseg_models.bench.loop import load_loop_clips, write_csv
    from usseg_models.errors import CheckpointError
    from usseg_models.propagation.flow import ClipFlows

    placements = _names(placements, PLACEMENTS, "placements")
    methods = _names(methods, METHODS, "methods")
    ks = sorted({int(k) for k in (ks or (QUICK_KS if quick else DEFAULT_KS))})
    if ks[0] < 1:
        raise UssegError(f"--ks {','.join(map(str, ks))}: every k must be at least 1")
    if pretrained and not Path(pretrained).is_file():
        raise CheckpointError(f"--pretrained {pretrained}: no such checkpoint file")
    offered = product_modes()
    skipped = [m for m in methods if m in PRODUCT_MODES and m not in offered]
    for m in skipped:
        logger.warning("refine_from_corrections offers no mode %r yet (modes: %s): skipped", m, ", ".join(offered))
    methods = [m for m in methods if m not in skipped]
    clips = load_loop_clips(data, quick=quick, count=count or (1 if quick else 4), seed=seed, frames=frames,
                            size=size)
    if not clips:
        raise UssegError(f"--data {data}: no clip with masks found")
    if quick:
        clips = clips[:1]
        max_steps = max_steps or 3
        time_budget_s = time_budget_s or QUICK_TIME_BUDGET_S
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ctx: dict[str, Any] = {"flows": {}, "device": device, "has_mode": _settings_have_mode(),
                           "settings": {"max_steps": max_steps, "time_budget_s": time_budget_s, "seed": seed}}
    base = None
    if any(m in PRODUCT_MODES for m in methods):
        ctx["model"], ctx["spatial_size"], base = base_model(out, pretrained, untrained, config, epochs, quick, seed,
                                                             device, base_data)
    _warm_up(methods)
    rows, bins = [], []
    jobs = [(clip, placement, k, method) for clip, placement, k in _jobs(clips, placements, ks) for method in methods]
    for clip, placement, k, method in tqdm(jobs, desc="refine bench", disable=not progress):
        chosen = placed_frames(clip.cine.shape[2], k, placement)
        corrected = {t: clip.truth[..., t] for t in chosen}
        seconds = 0.0
        if method == "flow":  # the clip's flows once, counted in every run of the flow anchor
            if clip.id not in ctx["flows"]:
                ctx["flows"][clip.id] = ClipFlows.compute(clip.cine, FLOW_PRESET)
            seconds = ctx["flows"][clip.id].seconds
        t0 = time.perf_counter()
        pred, extra = _run_method(method, clip, corrected, ctx)
        seconds += time.perf_counter() - t0
        if any(not np.array_equal(pred[..., t] > 0, corrected[t] > 0) for t in chosen):
            raise RuntimeError(f"{method} changed a corrected frame of {clip.id}")
        scores, bin_rows = _score(pred, clip.truth, chosen)
        key = {"clip": clip.id, "frames": clip.cine.shape[2], "placement": placement, "k": k, "method": method,
               "applicable": _applicable(method, chosen)}
        rows.append({**key, "corrected": " ".join(map(str, chosen)), **scores, "seconds": round(seconds, 3),
                     "steps": extra.get("steps", ""), "stopped_by": extra.get("stopped_by", "")})
        bins += [{**key, **b} for b in bin_rows]
    meta = {"data": str(data) if data else "synthetic", "quick": quick, "clips": [c.id for c in clips],
            "placements": placements, "ks": ks, "methods": methods, "product_modes_offered": offered,
            "skipped_methods": skipped, "base": base, "max_steps": max_steps, "time_budget_s": time_budget_s,
            "device": device, "seed": seed, "seconds": round(time.perf_counter() - start, 1)}
    write_csv(out / "refine.csv", rows)
    write_csv(out / "refine_distance.csv", bins)
    (out / "summary.md").write_text(_summary(rows, bins, meta))
    plot = _plot(out / "refine.png", rows, f"refinement from k corrected frames ({meta['data']})")
    return {"rows": rows, "bins": bins, "csv": str(out / "refine.csv"),
            "distance_csv": str(out / "refine_distance.csv"), "summary": str(out / "summary.md"), "plot": str(plot),
            "meta": meta}
