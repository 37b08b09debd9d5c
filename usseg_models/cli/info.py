"""``usseg info FILE``: describe an ultrasound file (frames, size, timing, colour, transfer syntax, spacing, UIDs).

DICOM files are described from their validated header without decoding the pixels (a missing decoder is still
reported as an error, since the file could not be read); other formats are loaded with
:func:`usseg_models.io.load_image`. Bad input raises :class:`~usseg_models.errors.UltrasoundIOError`, which the
dispatcher prints as one line before exiting with status 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

__all__ = ["add_parser", "run", "describe"]


def describe(path: str) -> dict[str, Any]:
    """Metadata of ``path`` as a JSON-friendly dict (keys of ``docs/DESIGN.md``)."""
    from usseg_models.io.formats import sniff_format

    if sniff_format(path) == "dicom":
        from usseg_models.io.dicom_pixels import dicom_metadata
        from usseg_models.io.validate import validate_dicom

        meta = dicom_metadata(validate_dicom(path), path)
        meta["format"] = "dicom"
    else:
        import warnings

        from usseg_models.io.formats import load_image

        with warnings.catch_warnings():  # the spacing line below says a video has no calibration
            warnings.filterwarnings("ignore", message=".*carries no calibration")
            _, meta = load_image(path)
    out = {}
    for key, value in meta.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _format(meta: dict[str, Any]) -> str:
    frames = meta.get("num_frames")
    spacing = meta.get("spacing") or []
    ft = meta.get("frame_time_ms")
    lines = [
        ("file", meta.get("filename_or_obj")),
        ("format", f"{meta.get('format')}" + (f" ({meta['container']}, codec {meta['codec']})"
                                              if meta.get("codec") else "")),
        ("frames", frames if frames is not None else "1 (single-frame)"),
        ("size", f"{meta.get('rows')}x{meta.get('columns')} (rows x columns)"),
        ("frame time", f"{ft:g} ms ({1000.0 / ft:.3g} frames/s)" if ft else "n/a"),
        ("photometric", meta.get("photometric_interpretation")),
        ("transfer syntax", _ts_name(meta.get("transfer_syntax_uid"))),
        ("spacing", " x ".join(f"{s:.6g}" for s in spacing[:2]) + (
            " pixels (a video file carries no calibration)" if meta.get("format") == "video"
            else f" mm ({meta.get('spacing_source', 'file')})")),
        ("modality", meta.get("modality") or "n/a"),
        ("bits allocated", meta.get("bits_allocated")),
        ("study UID", meta.get("study_instance_uid") or "n/a"),
        ("series UID", meta.get("series_instance_uid") or "n/a"),
        ("SOP instance UID", meta.get("sop_instance_uid") or "n/a"),
    ]
    if meta.get("one_slice"):
        lines.append(("one slice", "yes (X, Y, 1) volume"))
    return "\n".join(f"{k + ':':<18}{v}" for k, v in lines)


def _ts_name(uid: str | None) -> str:
    if not uid:
        return "n/a"
    from pydicom.uid import UID

    return f"{UID(uid).name} ({uid})"


def run(args: argparse.Namespace) -> int:
    meta = describe(args.file)
    print(json.dumps(meta, indent=2) if args.json else _format(meta))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("info", help="describe an ultrasound DICOM / image file",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("file", help="DICOM, PNG, JPEG, NIfTI or NRRD file")
    parser.add_argument("--json", action="store_true", help="print all metadata as JSON")
    parser.set_defaults(func=run)
    return parser
