"""Hybrid refinement and propagation against the learning-free anchors a user already has (synthetic clips, CPU).

Clips: sector-probe *chambers* (the target deforms: it beats) and linear-probe *lesions* (the target moves with
the tissue), 32 frames of 96 px, seeds the base model never saw. Corrections are the true masks on ``k`` evenly
spaced frames; Dice is the mean per-frame Dice of the **uncorrected** frames.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from usseg_models.data.synthetic import simulate_cine
from usseg_models.inference.refine import ClipCache, RefineSettings, refine_from_corrections
from usseg_models.metrics import dice
from usseg_models.networks import build_network
from usseg_models.propagation.anchors import copy_nearest, fill_between_slices, flow_anchor

SIZE = 64
FRAMES = 32
KS = (1, 2, 3, 5)
CLIPS = (("sector", "chamber", 31), ("linear", "lesion", 32), ("sector", "chamber", 33), ("linear", "lesion", 34))


def spaced(k: int, n: int = FRAMES) -> list[int]:
    return sorted({int(round((i + 0.5) * n / k)) for i in range(k)})


def uncorrected_dice(pred: np.ndarray, truth: np.ndarray, corrected: list[int]) -> float:
    others = [t for t in range(truth.shape[2]) if t not in corrected]
    return float(dice(pred[..., others] > 0, truth[..., others] > 0, frame_axis=-1))


@pytest.fixture(scope="module")
def table(refine_base_model):
    """Dice of every method on every (clip, k): ``{(clip index, k): {method: dice}}``."""
    rows = {}
    for i, (geometry, target, seed) in enumerate(CLIPS):
        clip = simulate_cine(FRAMES, 96, geometry, targets=(target,), seed=seed)
        cine, truth = np.asarray(clip.image), np.asarray(clip.label)
        cache = ClipCache()
        for k in KS:
            frames = spaced(k)
            fixes = {t: truth[..., t] for t in frames}
            row = {"copy": copy_nearest(fixes, FRAMES), "flow": flow_anchor(cine, fixes)}
            if k >= 2:
                row["fill"] = fill_between_slices(fixes, FRAMES)
            for mode in ("hybrid", "propagate"):
                settings = RefineSettings(mode=mode, max_steps=40, time_budget_s=600.0)
                row[mode] = refine_from_corrections(refine_base_model, cine, fixes, SIZE, settings, cache=cache,
                                        model_version="base").masks
            rows[(i, k)] = {name: uncorrected_dice(m, truth, frames) for name, m in row.items()}
    return rows


def _paired(table, anchor: str) -> tuple[float, float, np.ndarray]:
    diffs = np.array([r["hybrid"] - r[anchor] for r in table.values() if anchor in r])
    mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
    return mean, (mean / (sd / math.sqrt(len(diffs))) if sd > 0 else math.inf), diffs


@pytest.mark.parametrize("anchor", ["copy", "fill"])
def test_hybrid_beats_copy_and_fill_between_slices_by_more_than_chance(table, anchor):
    """Paired over (clip, k): the mean gain must be at least 0.02 with a one-sided paired t statistic of at least 3.

    Why 3: if the hybrid were no better than the anchor, the per-pair differences would scatter around zero and a
    t of 3 or more would turn up with probability below 0.01 for the 12–16 pairs here; the runs are seeded, so the
    statistic is the same on every run, and it says the gain is systematic rather than a lucky clip.
    """
    mean, t_stat, diffs = _paired(table, anchor)
    assert mean >= 0.02 and t_stat >= 3.0, (anchor, mean, t_stat, diffs.round(3).tolist())


def test_hybrid_is_not_worse_than_optical_flow_on_synthetic_clips(table):
    """On synthetic cines the speckle moves with the tissue, so plain DIS flow is already within a few hundredths
    of the truth (0.95–0.98 Dice) and the hybrid's gain over it is small and **not** systematic (measured: mean
    +0.005, paired t 1.6 — docs/results.md says so). What must hold: no loss on average and none above 0.02 on any
    clip; the real clip below is where the two differ."""
    mean, _, diffs = _paired(table, "flow")
    assert mean >= 0 and diffs.min() >= -0.02, (mean, diffs.round(3).tolist())


def test_on_a_real_clip_propagation_beats_plain_optical_flow(shared_data):
    """The real VTUS thyroid clip: speckle decorrelates between frames, the anchor's flow follows it and drifts.
    Measured: 0.81 vs 0.56 (k = 1) and 0.85 vs 0.78 (k = 3); required here: a gain of at least 0.05 at both."""
    from usseg_models.bench.loop import load_loop_clips

    clip = load_loop_clips(shared_data / "vtus_clip0002")[0]
    n = clip.cine.shape[2]
    for k in (1, 3):
        frames = spaced(k, n)
        fixes = {t: clip.truth[..., t] for t in frames}
        ours = refine_from_corrections(None, clip.cine, fixes, SIZE, RefineSettings(mode="propagate")).masks
        anchor = flow_anchor(clip.cine, fixes)
        gain = uncorrected_dice(ours, clip.truth, frames) - uncorrected_dice(anchor, clip.truth, frames)
        assert gain >= 0.05, (k, gain)


def test_more_corrected_frames_never_lower_dice_beyond_tolerance(table):
    """Tolerance 0.02 Dice: with evenly spaced corrections the set of scored frames changes with k, so a clip
    whose hardest frames stay uncorrected can lose a little; more than 0.02 would mean corrections hurt."""
    for i in range(len(CLIPS)):
        scores = [table[(i, k)]["hybrid"] for k in KS]
        for a, b in zip(scores, scores[1:]):
            assert b >= a - 0.02, (CLIPS[i], scores)


def test_hybrid_is_never_clearly_worse_than_its_own_propagation(table):
    """The learned half is only let in when the clip says it helps (agreement gate, leave-one-out)."""
    for key, r in table.items():
        assert r["hybrid"] >= r["propagate"] - 0.02, (key, r)


def test_an_untrained_model_still_refines_through_propagation():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = build_network("dsanet", "small")  # random weights
    clip = simulate_cine(FRAMES, 96, "linear", targets=("lesion",), seed=35)
    cine, truth = np.asarray(clip.image), np.asarray(clip.label)
    frames = spaced(3)
    fixes = {t: truth[..., t] for t in frames}
    hybrid = refine_from_corrections(model, cine, fixes, SIZE, RefineSettings(max_steps=10, time_budget_s=600.0))
    prop = refine_from_corrections(None, cine, fixes, SIZE, RefineSettings(mode="propagate"))
    assert hybrid.fusion is not None and hybrid.fusion.tau is None, hybrid.fusion  # the model was kept out
    np.testing.assert_array_equal(hybrid.masks, prop.masks)
    assert uncorrected_dice(hybrid.masks, truth, frames) >= 0.8
    assert hybrid.steps == 10


def test_cache_reuses_flows_and_features_and_gives_the_same_answer(refine_base_model):
    clip = simulate_cine(FRAMES, 96, "sector", targets=("chamber",), seed=36)
    cine, truth = np.asarray(clip.image), np.asarray(clip.label)
    fixes = {t: truth[..., t] for t in spaced(3)}
    cache = ClipCache()
    settings = RefineSettings(max_steps=6, time_budget_s=600.0)
    first = refine_from_corrections(refine_base_model, cine, fixes, SIZE, settings, cache=cache, model_version="v1")
    second = refine_from_corrections(refine_base_model, cine, fixes, SIZE, settings, cache=cache, model_version="v1")
    other_model = refine_from_corrections(refine_base_model, cine, fixes, SIZE, settings, cache=cache,
                                          model_version="v2")
    assert first.cached == [] and set(second.cached) == {"flows:smooth", "flows:fine", "features"}
    assert "features" not in other_model.cached  # features belong to one model version
    np.testing.assert_array_equal(first.masks, second.masks)


def test_budget_grows_with_the_number_of_corrections(refine_base_model):
    clip = simulate_cine(FRAMES, 96, "sector", targets=("chamber",), seed=37)
    cine, truth = np.asarray(clip.image), np.asarray(clip.label)
    settings = RefineSettings(max_steps=1000, time_budget_s=600.0)
    steps = [refine_from_corrections(refine_base_model, cine, {t: truth[..., t] for t in spaced(k)}, SIZE,
                                     settings).steps
             for k in (3, 5)]
    assert steps == [settings.steps_for(3), settings.steps_for(5)] and steps[1] > steps[0]
    # k = 1, 2: no corrected frame can be held out to judge the model, so it is not adapted
    for k in (1, 2):
        fixes = {t: truth[..., t] for t in spaced(k)}
        assert refine_from_corrections(refine_base_model, cine, fixes, SIZE, settings).steps == 0


def test_deadline_cuts_the_adaptation_to_the_time_left(refine_base_model):
    """A clip's first hybrid request computes flows and features before adapting; with a deadline the adaptation
    gets only what is left (here nothing: the deadline has passed when it starts), and the answer still comes."""
    settings = RefineSettings(max_steps=1000, time_budget_s=600.0, deadline_s=5.0)
    assert settings.adapt_seconds(1.0) == 4.0 and settings.adapt_seconds(7.0) == 0.0
    assert RefineSettings(time_budget_s=1.5, deadline_s=5.0).adapt_seconds(1.0) == 1.5
    assert RefineSettings(time_budget_s=1.5).adapt_seconds(100.0) == 1.5  # no deadline
    with pytest.raises(ValueError, match="deadline_s"):
        RefineSettings(deadline_s=-1.0)
    clip = simulate_cine(FRAMES, 96, "sector", targets=("chamber",), seed=37)
    cine, truth = np.asarray(clip.image), np.asarray(clip.label)
    frames = spaced(3)
    fixes = {t: truth[..., t] for t in frames}
    late = refine_from_corrections(refine_base_model, cine, fixes, SIZE,
                                   RefineSettings(max_steps=1000, time_budget_s=600.0, deadline_s=0.0))
    assert late.steps == 0 and late.stopped_by == "time", (late.steps, late.stopped_by)
    for t in frames:
        np.testing.assert_array_equal(late.masks[..., t], truth[..., t].astype(np.uint8))
    assert uncorrected_dice(late.masks, truth, frames) >= 0.8
    free = refine_from_corrections(refine_base_model, cine, fixes, SIZE,
                                   RefineSettings(max_steps=1000, time_budget_s=600.0, deadline_s=600.0))
    assert free.steps == RefineSettings(max_steps=1000).steps_for(3)


def test_fusion_is_judged_only_on_frames_the_model_was_not_adapted_on():
    """A model that memorised the frames it was adapted on and knows nothing else: scored on those frames (the old
    check) it looks perfect and is fused; scored on held-out frames it is kept out."""
    from usseg_models.inference.fusion import choose_fusion
    from usseg_models.inference.refine import held_out_frames
    from usseg_models.propagation.propagate import clip_flows, propagate_masks

    clip = simulate_cine(FRAMES, 96, "linear", targets=("lesion",), seed=38)
    cine, truth = np.asarray(clip.image), np.asarray(clip.label).astype(np.uint8)
    frames = spaced(5)
    fixes = {t: truth[..., t] for t in frames}
    held = held_out_frames(fixes)
    assert held == [frames[1], frames[3]] and held_out_frames({t: fixes[t] for t in frames[:2]}) == []
    flows = clip_flows(cine)
    prop = propagate_masks(flows, fixes, cine.shape[:2])
    memorised = np.zeros(truth.shape, np.float32)
    for t in frames:
        if t not in held:
            memorised[..., t] = truth[..., t]
    near = prop.distance <= 2
    memorised[..., near & ~np.isin(np.arange(FRAMES), frames)] = prop.probabilities[..., near & ~np.isin(
        np.arange(FRAMES), frames)]  # agrees with propagation next to the corrections: passes the agreement gate
    seen = [t for t in frames if t not in held]
    biased = choose_fusion(flows, {t: fixes[t] for t in seen}, prop, memorised, held=seen)
    assert biased.tau is not None, biased  # scored on what it memorised (the earlier check), the model wins
    honest = choose_fusion(flows, fixes, prop, memorised, held=held)
    assert honest.tau is None and "held-out" in honest.reason, honest
    assert choose_fusion(flows, fixes, prop, memorised, held=[]).tau is None
