"""Turn bad client input into HTTP 4xx answers instead of 500s.

MONAI Label 0.8.5 registers no exception handler for its own errors, so anything raised inside a task becomes
HTTP 500. The app raises :class:`fastapi.HTTPException` instead; FastAPI answers it with the given status and a
JSON ``{"detail": message}`` body. The helpers here also validate image/label ids coming from clients.
"""

from __future__ import annotations

import re

from fastapi import HTTPException

from usseg_models.errors import CheckpointError, MissingDecoderError, UltrasoundIOError, UssegError

__all__ = ["bad_request", "not_found", "unprocessable", "http_error_for", "validate_id"]

# Ids name files inside the studies folder: letters, digits, ``._-+`` (DICOM UIDs included), no separators.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-+]{0,199}$")


def bad_request(message: str) -> HTTPException:
    """HTTP 400 with ``message`` as the detail."""
    return HTTPException(status_code=400, detail=message)


def not_found(message: str) -> HTTPException:
    """HTTP 404 with ``message`` as the detail."""
    return HTTPException(status_code=404, detail=message)


def unprocessable(message: str) -> HTTPException:
    """HTTP 422 (the request was understood but the file cannot be used) with ``message`` as the detail."""
    return HTTPException(status_code=422, detail=message)


def http_error_for(exc: Exception) -> HTTPException:
    """Map a project error to the HTTP status a client should see.

    Args:
        exc: an exception raised while handling a request.

    Returns:
        ``HTTPException``: 415 for a missing decoder, 422 for unreadable/invalid files and bad checkpoints,
        400 for any other :class:`UssegError` or ``ValueError``.
    """
    if isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, MissingDecoderError):
        return HTTPException(status_code=415, detail=str(exc))
    if isinstance(exc, (UltrasoundIOError, CheckpointError)):
        return unprocessable(str(exc))
    if isinstance(exc, (UssegError, ValueError)):
        return bad_request(str(exc))
    raise TypeError(f"not a client error: {exc!r}")


def validate_id(value: object, what: str = "image id") -> str:
    """Return ``value`` if it is a safe datastore id, else raise HTTP 400.

    Ids become file names inside the studies folder, so path separators, ``..``, empty strings, control
    characters and names longer than 200 characters are refused.

    Examples::

        >>> validate_id("cine_000")
        'cine_000'
    """
    if not isinstance(value, str) or not value:
        raise bad_request(f"{what} is missing or not a string")
    if "/" in value or "\\" in value or ".." in value or not _ID_PATTERN.match(value):
        raise bad_request(f"invalid {what} {value!r}: only letters, digits and '._-+' are allowed (no paths)")
    return value
