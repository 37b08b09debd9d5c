"""Each data-set layout's names live in one module, and ``usseg_models.data.layouts`` holds only its dispatchers
(it re-exported every layout's names, a private helper included); ``usseg_models.data.synthetic`` still offers the
simulator's settings."""

from __future__ import annotations

import importlib

import pytest

LAYOUT_HOMES = {
    "pairing": ["pair_frame_masks", "pair_folders", "frame_folder_clip", "sub_folders"],
    "manifest": ["read_manifest", "write_manifest", "MANIFEST_COLUMNS"],
    "vivim": ["vivim_clips"],
    "camus": ["camus_clips", "camus_images"],
    "echonet": ["echonet_clips", "rasterise_tracing", "label_cache_dir"],
}
SYNTHETIC_HOMES = {"synthetic_bmode": ["RAYLEIGH_SNR", "UltrasoundConfig", "log_compress"]}


@pytest.mark.parametrize(("module", "names"), list(LAYOUT_HOMES.items()))
def test_each_layout_name_is_public_in_its_home(module, names):
    home = importlib.import_module(f"usseg_models.data.{module}")
    for name in names:
        assert name in home.__all__, (module, name)
        obj = getattr(home, name)
        assert getattr(obj, "__module__", home.__name__) == home.__name__, (module, name)


def test_layouts_holds_only_its_dispatchers():
    layouts = importlib.import_module("usseg_models.data.layouts")
    assert sorted(layouts.__all__) == ["layout_clips", "layout_images"]
    for names in LAYOUT_HOMES.values():
        for name in names:
            assert not hasattr(layouts, name) or name in ("vivim_clips", "camus_clips", "camus_images",
                                                          "echonet_clips"), name


def test_synthetic_offers_the_simulator_settings():
    old = importlib.import_module("usseg_models.data.synthetic")
    for module, names in SYNTHETIC_HOMES.items():
        home = importlib.import_module(f"usseg_models.data.{module}")
        for name in names:
            assert getattr(old, name) is getattr(home, name), (module, name)


@pytest.mark.parametrize("facade", ["layouts", "synthetic"])
def test_everything_in_all_is_importable(facade):
    module = importlib.import_module(f"usseg_models.data.{facade}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing
