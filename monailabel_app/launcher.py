"""Re-export of :mod:`usseg_models.serving.launcher` (its old home; the library must not import the app)."""

from usseg_models.serving.launcher import (  # noqa: F401
    APP_DIR,
    DATASTORE_FILE_EXT,
    MonaiLabelServer,
    free_port,
    prepare_app_dir,
    wait_for_http,
)

__all__ = ["APP_DIR", "DATASTORE_FILE_EXT", "free_port", "wait_for_http", "prepare_app_dir", "MonaiLabelServer"]
