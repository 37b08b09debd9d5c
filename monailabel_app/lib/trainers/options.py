"""Training request options, checked when the request arrives (HTTP 422), not inside the job.

``POST /train/{model}`` takes a JSON object of options. Every option has a type and a range; an unknown key is
refused (a misspelt ``max_epoch`` must not silently train with the default). Accepted keys:

=================  =======================================================================================
``max_epochs``     int, 1..10000
``batch_size``     int, 1..256
``lr``             float, finite, 0 < lr <= 1
``val_split``      float, 0 <= v < 1: fraction of labelled studies assigned to the fixed validation set (only
                   for studies that have no assignment yet; see :mod:`monailabel_app.lib.trainers.splits`)
``seed``           int >= 0
``multi_gpu``      bool; ``nproc`` int 1..64 (CPU processes for data-parallel training on gloo)
``device``         ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
``config``         must equal the configuration the server runs
``force``          bool: publish the retrained model even if it scores worse than the live one
``rollback``       bool: instead of training, put back the previously published model
``tolerance``      float, 0..1: a candidate is published when ``candidate >= live - tolerance``
``min_val_frames`` int, 0..100000: fewer labelled validation frames (cine frames or images) than this and a
                   candidate replaces a live model only with ``force`` (default :data:`DEFAULT_MIN_VAL_FRAMES`;
                   frames of one clip are alike, so this is a floor, not a guarantee); below it the candidate
                   is the last epoch, not the best-scoring one (:func:`~.base.chosen_checkpoint`)
``bootstrap``      bool (set by the app for the first training at start-up)
=================  =======================================================================================
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["TrainOptionError", "validate_train_options", "ALLOWED_KEYS", "DEFAULT_TOLERANCE", "DEFAULT_MIN_VAL_FRAMES"]

DEFAULT_TOLERANCE = 0.01
DEFAULT_MIN_VAL_FRAMES = 16
# keys MONAI Label itself adds to a train request
_PASSTHROUGH = {"model", "bundle_path", "name", "description", "enqueue", "gpus", "local_rank"}


class TrainOptionError(ValueError):
    """An option of a training request is unknown, of the wrong type or out of range (message names it)."""


def _number(value: Any, key: str, what: str) -> float:
    """``value`` (a number or a numeric string, not a bool) as a float; else "``key`` must be ``what``"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TrainOptionError(f"{key} must be {what}, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise TrainOptionError(f"{key} must be {what}, got {value!r}") from None


def _int(value: Any, key: str, lo: int, hi: int) -> int:
    number = _number(value, key, "an integer")
    if not math.isfinite(number) or number != int(number):
        raise TrainOptionError(f"{key} must be an integer, got {value!r}")
    if not lo <= int(number) <= hi:
        raise TrainOptionError(f"{key} must be between {lo} and {hi}, got {int(number)}")
    return int(number)


def _float(value: Any, key: str, lo: float, hi: float, lo_open: bool = False) -> float:
    number = _number(value, key, "a number")
    if not math.isfinite(number):
        raise TrainOptionError(f"{key} must be a finite number, got {value!r}")
    if number < lo or number > hi or (lo_open and number == lo):
        raise TrainOptionError(f"{key} must be in {'(' if lo_open else '['}{lo}, {hi}], got {number}")
    return number


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TrainOptionError(f"{key} must be true or false, got {value!r}")


def _device(value: Any, key: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise TrainOptionError(f"{key} must be 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    return value


_CHECKS = {
    "max_epochs": lambda v, k: _int(v, k, 1, 10000),
    "batch_size": lambda v, k: _int(v, k, 1, 256),
    "lr": lambda v, k: _float(v, k, 0.0, 1.0, lo_open=True),
    "val_split": lambda v, k: _float(v, k, 0.0, 0.95),
    "seed": lambda v, k: _int(v, k, 0, 2**31 - 1),
    "multi_gpu": _bool,
    "nproc": lambda v, k: _int(v, k, 1, 64),
    "device": _device,
    "force": _bool,
    "rollback": _bool,
    "tolerance": lambda v, k: _float(v, k, 0.0, 1.0),
    "min_val_frames": lambda v, k: _int(v, k, 0, 100000),
    "bootstrap": _bool,
}
ALLOWED_KEYS = tuple(_CHECKS) + ("config",)


def validate_train_options(request: dict[str, Any], defaults: dict[str, Any], config: str) -> dict[str, Any]:
    """Defaults overridden by the request's options, each checked; raises :class:`TrainOptionError`.

    Args:
        request: the train request (MONAI Label adds ``model`` and may add a few bookkeeping keys).
        defaults: the model's defaults (``max_epochs``, ``batch_size``, ``lr``, ``val_split``, ...).
        config: the configuration the server runs (``small``/``paper``).
    """
    if not isinstance(request, dict):
        raise TrainOptionError(f"training options must be a JSON object, got {type(request).__name__}")
    # MONAI Label copies the per-model parameter dicts ({"<model>": {...}}) into the request: not options
    request = {k: v for k, v in request.items() if not isinstance(v, dict)}
    unknown = sorted(k for k in request if k not in _CHECKS and k != "config" and k not in _PASSTHROUGH
                     and k not in defaults)
    if unknown:
        raise TrainOptionError(f"unknown training option(s) {unknown}; accepted: {sorted(ALLOWED_KEYS)}")
    opts = dict(defaults)
    opts.update({k: v for k, v in request.items() if k not in _PASSTHROUGH})
    if opts.get("config", config) != config:
        raise TrainOptionError(f"this server runs the {config!r} configuration, not {opts['config']!r}")
    for key, check in _CHECKS.items():
        if key in opts and opts[key] is not None:
            opts[key] = check(opts[key], key)
    opts.setdefault("tolerance", DEFAULT_TOLERANCE)
    return opts
