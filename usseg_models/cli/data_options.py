"""Data-source options shared by ``usseg train`` and ``usseg evaluate`` (not a sub-command).

A command takes its data in one of three ways (see :mod:`usseg_models.data.layouts`):

- ``--data ROOT``: a folder in any recognised layout (VTUS/Vivim, CAMUS, EchoNet-Dynamic, BUSI, frame folders,
  MONAI Label datastore, ...), or a CSV manifest file;
- ``--manifest CSV``: a manifest ``image,mask[,subject][,split][,frames]``;
- ``--images DIR --masks DIR``: pairing by file stem; the pairs are written to ``<out>/pairs.csv`` (kept, so the
  run can be repeated and checked) and read back as a manifest.

``--cache-dir`` sets where generated label volumes go (EchoNet tracings; ``$USSEG_CACHE_DIR`` for this process).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from usseg_models.errors import UssegError

__all__ = ["add_data_options", "resolve_data"]

logger = logging.getLogger(__name__)


def add_data_options(p: argparse.ArgumentParser) -> None:
    """Add ``--data``, ``--manifest``, ``--images``, ``--masks`` and ``--cache-dir`` to a sub-command parser."""
    g = p.add_argument_group("data (one of --data, --manifest, --images with --masks)")
    g.add_argument("--data", default=None,
                   help="data folder in a recognised layout (see README: VTUS/Vivim, CAMUS, EchoNet-Dynamic, BUSI, "
                        "frame folders, MONAI Label datastore) or a CSV manifest")
    g.add_argument("--manifest", default=None, help="CSV manifest with columns image,mask[,subject][,split][,frames]")
    g.add_argument("--images", default=None, help="folder of images (or clips) paired with --masks by file name")
    g.add_argument("--masks", default=None, help="folder of masks with the same file names (any extension, GIF too)")
    g.add_argument("--cache-dir", default=None,
                   help="folder for generated label volumes (EchoNet tracings); default $USSEG_CACHE_DIR or a "
                        "folder under the system temp dir")


def resolve_data(args: argparse.Namespace, kind: str, out_dir: str | os.PathLike) -> str:
    """The ``data`` argument for the training/evaluation functions: a folder or a manifest path.

    Args:
        args: parsed options of :func:`add_data_options`.
        kind: ``"clips"`` or ``"images"`` (how ``--images``/``--masks`` are paired).
        out_dir: where ``pairs.csv`` goes for ``--images``/``--masks``.

    Raises:
        UssegError: no source, or more than one, or ``--images`` without ``--masks``.
    """
    from usseg_models.data.manifest import write_manifest
    from usseg_models.data.pairing import pair_folders

    given = [name for name in ("data", "manifest") if getattr(args, name, None)]
    paired = bool(args.images or args.masks)
    if paired and not (args.images and args.masks):
        raise UssegError("--images and --masks go together")
    if len(given) + int(paired) != 1:
        raise UssegError("give exactly one data source: --data ROOT, --manifest CSV, or --images DIR --masks DIR")
    if args.cache_dir:
        os.environ["USSEG_CACHE_DIR"] = str(Path(args.cache_dir).resolve())
    if not paired:
        return str(args.data or args.manifest)
    rows = pair_folders(args.images, args.masks, kind)
    path = write_manifest(rows, Path(out_dir) / "pairs.csv")
    logger.info("paired %d %s of %s with %s: %s", len(rows), kind, args.images, args.masks, path)
    print(f"paired {len(rows)} {kind} with their masks: {path}")
    return str(path)
