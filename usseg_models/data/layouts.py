"""Public data sets as they are shipped, explicit image/mask folders and CSV manifests: record discovery.

:func:`usseg_models.data.discovery.discover_clips` / :func:`~usseg_models.data.discovery.discover_images` call
:func:`layout_clips` / :func:`layout_images` first; what a layout here recognises is taken from it (with its
official splits and subjects), everything else under the folder goes through the generic rules of
:mod:`usseg_models.data.discovery`. A CSV file given instead of a folder is read by
:func:`usseg_models.data.manifest.read_manifest`.

This module holds the two dispatchers; each layout lives in its own module, whose docstring describes its files
(import a layout's names from its module).

Layouts (``ROOT`` is what the user passes; each layout may sit anywhere below it):

- **VTUS / Vivim** (``scott-yjyang/Vivim``): ``<A>/<clip>/*.jpg`` with ``<A>_GT/<clip>/*.png``
  (:mod:`usseg_models.data.vivim`).
- **CAMUS** (2023 NIfTI release): half sequences with per-frame labels and ED/ES frames, official split
  (:mod:`usseg_models.data.camus`).
- **EchoNet-Dynamic**: ``Videos/<name>.avi`` + ``VolumeTracings.csv`` [+ ``FileList.csv``], traced frames
  rasterised into cached sparse-frame label volumes (:mod:`usseg_models.data.echonet`).
- **BUSI** as distributed: the generic rules (:func:`layout_images`).

Explicit pairing and manifests:

- :func:`~usseg_models.data.pairing.pair_folders` pairs ``--images DIR`` with ``--masks DIR`` by file stem.
- A **CSV manifest** (:func:`~usseg_models.data.manifest.read_manifest`, ``write_manifest``): header
  ``image,mask[,subject][,split][,frames]`` (:mod:`usseg_models.data.manifest`).

Sparse-frame clips (``ClipRecord.labelled`` not ``None``) train only on windows whose target frame is labelled;
frames without a mask are never read (see :class:`~usseg_models.data.datasets.ClipWindowDataset`).
"""

from __future__ import annotations

import os
from pathlib import Path

from usseg_models.data.camus import camus_clips, camus_images
from usseg_models.data.echonet import echonet_clips
from usseg_models.data.records import ClipRecord, ImageRecord
from usseg_models.data.vivim import vivim_clips

__all__ = ["layout_clips", "layout_images"]


def layout_clips(
    root: Path, subject_pattern: str | None = None, cache_dir: str | os.PathLike | None = None
) -> list[ClipRecord]:
    """Clips of every shipped layout found under ``root`` (VTUS/Vivim, CAMUS, EchoNet-Dynamic)."""
    return [*vivim_clips(root, subject_pattern), *camus_clips(root, subject_pattern),
            *echonet_clips(root, subject_pattern, cache_dir)]


def layout_images(root: Path, subject_pattern: str | None = None) -> list[ImageRecord]:
    """Images of every shipped layout with its own splits found under ``root`` (CAMUS ED/ES).

    BUSI as distributed (``Dataset_BUSI_with_GT/<class>/<name>.png`` + ``<name>_mask[_N].png``) needs no special
    rule: the generic ``name.png`` + ``name_mask.png`` rule finds it, extra masks are merged, and the ``normal``
    class keeps its empty masks (images without a lesion are valid training data).
    """
    return camus_images(root, subject_pattern)
