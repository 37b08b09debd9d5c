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
    "ModelNotTrainedError",
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


class ModelNotTrainedError(ServerResponseError):
    """The server refused to segment with a model that has never been trained (HTTP 409).

    ``str(error)`` is a plain sentence for the user; ``detail`` keeps the server's own text (with the training
    status).

    Args:
        model: the model's name (from the server's message, else the request path).
        detail: the server's message.
        method: HTTP method of the request.
        url: URL of the request.
    """

    def __init__(self, model: str, detail: str, method: str = "", url: str = ""):
        super().__init__(409, detail, method, url)
        self.model = model
        self.detail = detail
        status = _training_status(detail)
        status_text = f" Training: {status}." if status else ""
        self.args = (
            f"The {model} model on the server is not trained yet, so it cannot segment this clip.{status_text} "
            "Submit a few labelled clips and press Train (or wait for the training that is running), "
            "or draw the target on a few frames yourself and press \"Refine from my edits\".",
        )

    def __str__(self) -> str:
        return self.args[0]


def _training_status(detail: str) -> str:
    """What the server says after "is not trained yet" (its training status), without API hints for programs."""
    import re

    _, found, rest = detail.partition("not trained yet")
    if not found:
        return ""
    if ":" in rest:
        rest = rest.split(":", 1)[1]
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", rest) if s.strip()]
    kept = [s for s in sentences if "allow_untrained" not in s]
    return " ".join(kept).strip(" .;,")


class ClipGeometryError(USSegClipError, ValueError):
    """An IJK→RAS matrix, a frame axis or array shapes do not describe a valid clip."""


class LabelFileError(USSegClipError, ValueError):
    """A label or image file cannot be read, or its content does not fit the clip."""
