"""Reading and writing clips and label volumes with their geometry (NIfTI, NRRD, PNG).

Geometry conventions:

- NIfTI's affine maps voxel (i, j, k) to RAS, exactly Slicer's IJK→RAS, so it is written and read unchanged
  (sform and qform both set, code 1 = scanner). NIfTI stores the sform as float32, so matrix entries round-trip to
  about 1e-7 relative; NRRD keeps full float64 precision.
- NRRD ``space directions``/``space origin`` are in the file's ``space`` (LPS for ITK and Slicer, or RAS); LPS is
  converted with ``diag(-1, -1, 1)``.
- PNG has no geometry: a 2-D PNG label ``(rows, cols)`` is read as ``(X=cols, Y=rows, 1)`` with the identity matrix,
  following the usseg layout (X = columns).
"""

from __future__ import annotations

import os

import numpy as np

from .errors import LabelFileError
from .geometry import Clip, check_ijk_to_ras

__all__ = ["read_volume", "write_nifti", "write_nrrd", "LPS_TO_RAS"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _suffix(path: str) -> str:
    name = os.path.basename(path).lower()
    for ext in (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".png"):
        if name.endswith(ext):
            return ext
    return os.path.splitext(name)[1]


def write_nifti(clip: Clip, path: str | os.PathLike) -> str:
    """Write ``clip`` as NIfTI (``.nii`` or ``.nii.gz``) with its IJK→RAS matrix as the affine.

    The frame axis stays where it is in the voxel array (normally k); readers recover it from the matrix.

    Raises:
        LabelFileError: the path does not end in ``.nii``/``.nii.gz``.
    """
    import nibabel as nib

    path = os.fspath(path)
    if _suffix(path) not in (".nii", ".nii.gz"):
        raise LabelFileError(f"NIfTI file name must end in .nii or .nii.gz: {path}")
    img = nib.Nifti1Image(np.asarray(clip.voxels), clip.ijk_to_ras)
    img.set_sform(clip.ijk_to_ras, code=1)
    img.set_qform(clip.ijk_to_ras, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return path


def write_nrrd(clip: Clip, path: str | os.PathLike) -> str:
    """Write ``clip`` as NRRD in LPS space (as ITK and Slicer do), float64 geometry."""
    import nrrd

    path = os.fspath(path)
    lps = LPS_TO_RAS @ clip.ijk_to_ras
    header = {
        "space": "left-posterior-superior",
        "space directions": lps[:3, :3].T,
        "space origin": lps[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
    }
    nrrd.write(path, np.asarray(clip.voxels), header, index_order="F")
    return path


def _read_nifti(path: str, frame_axis: int) -> Clip:
    import nibabel as nib

    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises several types for damaged files
        raise LabelFileError(f"cannot read NIfTI file {path}: {e}") from e
    affine = img.affine  # sform when coded, else qform, else the header fallback (nibabel's rule)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.ndim != 3:
        raise LabelFileError(f"{path}: expected a 2-D or 3-D volume, got shape {data.shape}")
    return Clip(data, affine, frame_axis)


def _read_nrrd(path: str, frame_axis: int) -> Clip:
    import nrrd

    try:
        data, header = nrrd.read(path, index_order="F")
    except Exception as e:
        raise LabelFileError(f"cannot read NRRD file {path}: {e}") from e
    if data.ndim == 4:  # e.g. a layered .seg.nrrd or a vector image: refuse rather than guess
        raise LabelFileError(f"{path}: 4-D NRRD (layers or components) is not a single label volume")
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    space = str(header.get("space", "left-posterior-superior")).lower()
    directions = header.get("space directions")
    origin = header.get("space origin")
    m = np.eye(4)
    if directions is not None:
        d = np.asarray(directions, dtype=np.float64)
        d = d[~np.all(np.isnan(d), axis=1)] if d.ndim == 2 else d
        if d.shape[0] == 2:  # 2-D image: unit third axis
            d = np.vstack([np.pad(d, ((0, 0), (0, 3 - d.shape[1]))), [0.0, 0.0, 1.0]])
        m[:3, :3] = d.T
    if origin is not None:
        o = np.asarray(origin, dtype=np.float64)
        m[: o.shape[0], 3] = o
    if space in ("left-posterior-superior", "lps"):
        m = LPS_TO_RAS @ m
    elif space not in ("right-anterior-superior", "ras"):
        raise LabelFileError(f"{path}: unsupported NRRD space {space!r} (need LPS or RAS)")
    return Clip(data, check_ijk_to_ras(m), frame_axis)


def _read_png(path: str, frame_axis: int) -> Clip:
    try:
        from PIL import Image
    except ImportError as e:
        raise LabelFileError("reading PNG labels needs Pillow: slicer.util.pip_install('pillow')") from e
    try:
        with Image.open(path) as im:
            data = np.asarray(im)
    except Exception as e:
        raise LabelFileError(f"cannot read PNG file {path}: {e}") from e
    if data.ndim == 3:  # colour label: any channel set counts as that value of the first channel
        data = data[..., 0]
    return Clip(data.T[:, :, np.newaxis], np.eye(4), frame_axis)


def read_volume(path: str | os.PathLike, frame_axis: int = 2) -> Clip:
    """Read a NIfTI, NRRD or PNG file as a :class:`Clip` (voxels in IJK order, IJK→RAS matrix).

    Args:
        path: file to read.
        frame_axis: which voxel axis counts frames (stored on the returned clip).

    Raises:
        LabelFileError: missing file, unknown format, or content that is not one 2-D/3-D volume.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LabelFileError(f"file not found: {path}")
    ext = _suffix(path)
    if ext in (".nii", ".nii.gz"):
        return _read_nifti(path, frame_axis)
    if ext in (".nrrd", ".nhdr", ".seg.nrrd"):
        return _read_nrrd(path, frame_axis)
    if ext == ".png":
        return _read_png(path, frame_axis)
    raise LabelFileError(f"unsupported file type {ext!r} for {path} (NIfTI, NRRD or PNG expected)")
