"""`usseg_models.data.layouts` and `usseg_models.data.synthetic` still offer every name their importers use.

The layouts and the simulator live in smaller modules (pairing, manifest, vivim, camus, echonet; synthetic_bmode);
the old import paths re-export them, the very same objects.
"""

from __future__ import annotations

import importlib

import pytest

LAYOUT_HOMES = {
    "pairing": ["pair_frame_masks", "pair_folders", "_frame_clip"],
    "manifest": ["read_manifest", "write_manifest", "MANIFEST_COLUMNS"],
    "vivim": ["vivim_clips"],
    "camus": ["camus_clips", "camus_images"],
    "echonet": ["echonet_clips", "rasterise_tracing", "label_cache_dir"],
}
SYNTHETIC_HOMES = {"synthetic_bmode": ["RAYLEIGH_SNR", "UltrasoundConfig", "log_compress"]}


@pytest.mark.parametrize(("facade", "homes"), [("layouts", LAYOUT_HOMES), ("synthetic", SYNTHETIC_HOMES)])
def test_old_path_re_exports_the_new_home(facade, homes):
    old = importlib.import_module(f"usseg_models.data.{facade}")
    for module, names in homes.items():
        home = importlib.import_module(f"usseg_models.data.{module}")
        for name in names:
            assert getattr(old, name) is getattr(home, name), (facade, module, name)


@pytest.mark.parametrize("facade", ["layouts", "synthetic"])
def test_everything_in_all_is_importable(facade):
    module = importlib.import_module(f"usseg_models.data.{facade}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing
