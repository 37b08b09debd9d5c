"""Checks in front of MONAI Label 0.8.5's own request handlers, so malformed requests get 4xx instead of 500.

MONAI Label parses some request fields itself before the app sees them, and answers 500 when they are wrong.
:func:`install_request_guards` wraps those handler functions (module attributes of ``monailabel.endpoints.*``,
which the routes call by name) with checks that answer first:

==============================================  ===================================================================
request                                         answer
==============================================  ===================================================================
``POST /infer/{model}``, ``params`` form field  422 when not JSON or not a JSON object
``POST /infer/{model}`` without image           400 (neither ``image=`` id, uploaded ``file`` nor ``session_id``)
``PUT /datastore/image`` / ``label``            422 when ``params`` is not a JSON object
``PUT /datastore/image/info``, ``label/info``   422 when ``info`` is not a JSON object
``POST /scoring/{method}``                      404 for an unknown method (instead of queuing a job that fails)
``PUT /model/{name}``                           404 unknown model; 422 unless the file is a working checkpoint
                                                (:mod:`monailabel_app.lib.checkpoint_upload`); live model unchanged
``DELETE /datastore/label``                     404 when no label of that id and tag is stored (0.8.5: 200 ``{}``)
``DELETE /model/{name}``                        deletes only a checkpoint this app trained or published, and says
                                                what is served next (the pretrained file or initial weights);
                                                409 when the file in use is the pretrained one (0.8.5 renamed
                                                the user's own ``pretrained_path`` file to ``*.deleted``); 404
                                                when the model has no checkpoint file
any guarded request with an uploaded file       an error about the upload names the user's file (``clip.nii.gz``),
                                                not the server's temporary copy (0.8.5 copies each upload to
                                                ``/tmp/tmpXXXXXXXX<suffix>`` and forgets the name)
==============================================  ===================================================================

Install it before anything copies these functions (e.g. :mod:`monailabel_app.lib.threaded_routes`); installing
twice is harmless.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import pathlib
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException

from monailabel_app.lib.http import bad_request, http_error_for, not_found, unprocessable

__all__ = ["install_request_guards", "json_object", "name_uploads"]

logger = logging.getLogger(__name__)

_MARK = "__usseg_guarded__"


def json_object(text: Any, field: str = "params") -> dict[str, Any]:
    """Parse a form field that must hold a JSON object (empty means ``{}``); else HTTP 422 naming the field."""
    if text is None or text == "" or not isinstance(text, (str, bytes)):
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise unprocessable(f"{field} is not valid JSON ({exc}); send a JSON object such as {{}}") from exc
    if not isinstance(value, dict):
        raise unprocessable(f"{field} must be a JSON object, got a JSON {type(value).__name__}: {str(text)[:80]}")
    return value


_UPLOAD_FIELDS = ("file", "label")  # the UploadFile arguments of run_inference, add_image and save_label


def _uploads_by_suffix(bound: inspect.BoundArguments) -> dict[str, list[str]]:
    """``{suffix: [file names as uploaded]}``; the suffix by MONAI Label's own rule for its temporary copy."""
    found: dict[str, list[str]] = {}
    for field in _UPLOAD_FIELDS:
        filename = getattr(bound.arguments.get(field), "filename", None)
        if isinstance(filename, str) and filename:
            found.setdefault("".join(pathlib.Path(filename).suffixes), []).append(os.path.basename(filename))
    return found


def name_uploads(detail: str, uploads: dict[str, list[str]]) -> str:
    """``detail`` with each of MONAI Label's temporary upload copies (``NamedTemporaryFile(suffix=...).name``:
    ``<tempdir>/tmp`` + 8 characters + the upload's suffixes) replaced by the name the user uploaded; where two
    uploads share the suffix, by both names."""
    for suffix, names in uploads.items():
        pattern = re.escape(os.path.join(tempfile.gettempdir(), "tmp")) + r"[a-z0-9_]{8}" + re.escape(suffix)
        shown = names[0] if len(names) == 1 else "one of the uploads (" + ", ".join(names) + ")"
        detail = re.sub(pattern + r"(?!\w)", lambda _, shown=shown: shown, detail)
    return detail


def _guard(module: Any, name: str, check: Callable[[inspect.BoundArguments], None]) -> bool:
    """Replace ``module.name`` by a wrapper that runs ``check(bound arguments)`` first, and names uploaded files in
    the errors it answers (:func:`name_uploads`)."""
    original = getattr(module, name, None)
    if original is None:
        logger.warning("MONAI Label has no %s.%s; its request guard is not installed", module.__name__, name)
        return False
    if getattr(original, _MARK, False):
        return True
    signature = inspect.signature(original)

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        check(bound)
        try:
            return original(*args, **kwargs)
        except HTTPException as exc:
            uploads = _uploads_by_suffix(bound)
            if uploads and isinstance(exc.detail, str):
                exc.detail = name_uploads(exc.detail, uploads)
            raise

    setattr(guarded, _MARK, True)
    setattr(module, name, guarded)
    return True


def _field(bound: inspect.BoundArguments, name: str) -> Any:
    value = bound.arguments.get(name)
    return value if isinstance(value, (str, bytes)) else None  # a FastAPI Form(...) default means "not sent"


def _check_infer(bound: inspect.BoundArguments) -> None:
    json_object(_field(bound, "params"), "params")
    args = bound.arguments
    if not args.get("file") and not args.get("image") and not args.get("session_id"):
        raise bad_request("no image: give a datastore id (?image=ID) or upload the file (multipart field 'file')")


def _check_json_field(field: str) -> Callable[[inspect.BoundArguments], None]:
    def check(bound: inspect.BoundArguments) -> None:
        json_object(_field(bound, field), field)

    return check


def _check_scoring(bound: inspect.BoundArguments) -> None:
    from monailabel.interfaces.utils.app import app_instance

    method = bound.arguments.get("method")
    methods = sorted(app_instance().info().get("scoring", {}))
    if method not in methods:
        raise not_found(f"no scoring method {method!r}; available: {methods}")


def _update_model(background_tasks: Any, model: str, file: Any) -> dict[str, Any]:
    """Replacement of MONAI Label's ``update_model``: validate the upload, then publish it (or 4xx)."""
    from monailabel.interfaces.utils.app import app_instance

    from monailabel_app.lib.checkpoint_upload import publish_checkpoint, validate_checkpoint
    from usseg_models.errors import CheckpointError

    config = getattr(app_instance(), "models", {}).get(model)
    if config is None:
        raise not_found(f"no model {model!r} to update; available: {sorted(getattr(app_instance(), 'models', {}))}")
    suffix = "".join(pathlib.Path(file.filename or "upload.pt").suffixes) or ".pt"
    fd, tmp = tempfile.mkstemp(prefix="usseg_upload_", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(file.file, out)
        try:
            checked = validate_checkpoint(tmp, config.store)
        except CheckpointError as exc:
            logger.warning("PUT /model/%s refused: %s", model, exc)
            raise http_error_for(exc) from exc
        return {**publish_checkpoint(tmp, config.store), "checked": checked}
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_remove_label(bound: inspect.BoundArguments) -> None:
    from monailabel.interfaces.utils.app import app_instance

    label_id, tag = bound.arguments.get("id"), bound.arguments.get("tag")
    uri = ""
    if isinstance(label_id, str) and isinstance(tag, str) and label_id and tag:
        try:
            uri = app_instance().datastore().get_label_uri(label_id, tag)
        except Exception:  # noqa: BLE001 - an id the datastore cannot even look up names no stored label
            uri = ""
    if not uri or not os.path.isfile(uri):
        raise not_found(f"no label {label_id!r} with tag {tag!r} to delete")


def _delete_model(model: str) -> dict[str, Any]:
    """Replacement of MONAI Label's ``delete_model``: remove this app's own checkpoint, never the pretrained file."""
    from datetime import datetime

    from monailabel.interfaces.utils.app import app_instance

    models = getattr(app_instance(), "models", {})
    config = models.get(model)
    if config is None:
        raise not_found(f"no model {model!r}; available: {sorted(models)}")
    store = config.store
    if not store.trained_path.is_file():
        if store.pretrained_path.is_file():
            raise HTTPException(status_code=409, detail=(
                f"{model} is serving its pretrained weights ({store.pretrained_path.name}), which this app did not "
                "write and will not delete; start the server without pretrained_path, or remove the file yourself"))
        raise not_found(f"{model} has no checkpoint file to delete (it serves its initial weights)")
    moved = f"{store.trained_path}.{datetime.now().strftime('%Y%m%d_%H%M%S')}.deleted"
    shutil.move(str(store.trained_path), moved)
    _, version = store.refresh()  # report what the store now serves, as the store itself says
    serving = "initial weights" if version["weights"] == "initial" else version["weights"]
    logger.warning("DELETE /model/%s: %s moved to %s; now serving %s", model, store.trained_path.name, moved, serving)
    return {"deleted": store.trained_path.name, "moved_to": os.path.basename(moved), "now_serving": serving,
            "version": version}


def install_request_guards() -> list[str]:
    """Install the guards of the module docstring; returns the guarded ``module.function`` names.

    Only in the server process (where ``monailabel.app`` is loaded); a training or scoring subprocess serves
    no HTTP and gets nothing.
    """
    if "monailabel.app" not in sys.modules:
        return []
    from monailabel.endpoints import datastore, infer, model, scoring

    guards = [
        (infer, "run_inference", _check_infer),
        (datastore, "add_image", _check_json_field("params")),
        (datastore, "save_label", _check_json_field("params")),
        (datastore, "update_image_info", _check_json_field("info")),
        (datastore, "update_label_info", _check_json_field("info")),
        (scoring, "run_method", _check_scoring),
        (datastore, "remove_label", _check_remove_label),
    ]
    installed = [f"{m.__name__}.{n}" for m, n, check in guards if _guard(m, n, check)]
    if not getattr(model.update_model, _MARK, False):
        setattr(_update_model, _MARK, True)
        model.update_model = _update_model
    installed.append(f"{model.__name__}.update_model")
    if not getattr(model.delete_model, _MARK, False):
        setattr(_delete_model, _MARK, True)
        model.delete_model = _delete_model
    installed.append(f"{model.__name__}.delete_model")
    logger.info("request guards installed: %s", ", ".join(installed))
    return installed

