"""Old name of :mod:`usseg_models.io.loaders` (the module holds loaders, not transforms); kept for imports."""

from usseg_models.io.loaders import *  # noqa: F401,F403
from usseg_models.io.loaders import __all__  # noqa: F401
