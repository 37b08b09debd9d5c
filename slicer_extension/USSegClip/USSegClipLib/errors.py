"""Exception types of the USSegClip library.

The library runs inside 3D Slicer's Python, where the ``usseg_models`` package (and torch) is normally absent, so it
defines its own small hierarchy instead of importing ``usseg_models.errors``. Every message names the problem in
words a user can act on; the Slicer widget shows ``str(error)`` as is.
"""

from __future__ import annotations

__all__ = [
    "USSegClipError",
    "ServerError",
    "ServerUnavailableError",
    "ServerTimeoutError",
    "ServerResponseError",
    "ClipGeometryError",
    "LabelFileError",
]


class USSegClipError(Exception):
    """Base class of every error raised by ``USSegClipLib``."""


class ServerError(USSegClipError):
    """Base class of errors talking to the MONAI Label server."""


class ServerUnavailableError(ServerError):
    """The server could not be reached (connection refused, unknown host, TLS failure)."""


class ServerTimeoutError(ServerError):
    """The server did not answer within the client's timeout."""


class ServerResponseError(ServerError):
    """The server answered with an HTTP error status.

    Args:
        status: HTTP status code.
        message: the server's own explanation (FastAPI ``detail``), or the start of the body.
        method: HTTP method of the request.
        url: URL of the request.
    """

    def __init__(self, status: int, message: str, method: str = "", url: str = ""):
        self.status = int(status)
        self.message = message
        self.method = method
        self.url = url
        where = f" ({method} {url})" if method or url else ""
        super().__init__(f"Server answered HTTP {self.status}{where}: {message}")

    @property
    def is_client_error(self) -> bool:
        """True for 4xx answers (the request was wrong, repeating it will not help)."""
        return 400 <= self.status < 500


class ClipGeometryError(USSegClipError, ValueError):
    """An IJK→RAS matrix, a frame axis or array shapes do not describe a valid clip."""


class LabelFileError(USSegClipError, ValueError):
    """A label or image file cannot be read, or its content does not fit the clip."""
