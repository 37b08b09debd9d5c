"""Header-only probing for the app: the library's one definition (:mod:`usseg_models.io.header`), re-exported.

:func:`probe_header` answers "how big will this file be once decoded, and what is its (X, Y[, T]) shape?" for every
format :func:`usseg_models.io.load_image` reads, from each format's header alone (no pixel is decoded).
"""

from usseg_models.io.header import HeaderTooLarge, ImageHeader
from usseg_models.io.image import probe_header

__all__ = ["ImageHeader", "probe_header", "HeaderTooLarge"]
