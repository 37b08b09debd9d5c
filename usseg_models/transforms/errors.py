"""The error the transforms raise for input they cannot take (a wrong shape, an empty array, a frame index out of
range). It is a :class:`~usseg_models.errors.UssegError` (CLI: one line, exit 2; server: HTTP 4xx) and a
``ValueError`` (MONAI's convention for bad arguments)."""

from usseg_models.errors import UssegError

__all__ = ["PreprocessingError"]


class PreprocessingError(UssegError, ValueError):
    """An array handed to a transform has a shape, size or index it cannot take (message names it)."""
