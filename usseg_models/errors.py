"""Exception types shared by the whole project.

Every problem with user input (a file that is not DICOM, a truncated file, an unsupported transfer syntax,
a wrong tensor shape handed to a public helper, ...) is raised as a subclass of :class:`UssegError` with a
message that names the problem and the offending file or argument. The CLI turns these into one line on
stderr and a non-zero exit status; the MONAI Label app turns them into HTTP 4xx responses.
"""

__all__ = ["UssegError", "UltrasoundIOError", "MissingDecoderError", "CheckpointError"]


class UssegError(Exception):
    """Base class of the errors this project raises on purpose for bad input."""


class UltrasoundIOError(UssegError, ValueError):
    """A file could not be read as an ultrasound image or cine (message names the file and the problem)."""


class MissingDecoderError(UltrasoundIOError):
    """The file's transfer syntax needs an optional decoder package that is not installed (message names it)."""


class CheckpointError(UssegError, ValueError):
    """A checkpoint or pretrained-weights file does not match the network (message lists mismatching keys)."""
