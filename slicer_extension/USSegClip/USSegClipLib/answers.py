"""Reading MONAI Label's HTTP answers: the :class:`InferResult` of ``/infer``, JSON bodies, downloaded files, and
error answers turned into :mod:`USSegClipLib.errors` exceptions that carry the server's own message (FastAPI's
``detail``).

Works on ``requests.Response`` objects only; sending requests is :mod:`USSegClipLib.transport`'s job.
"""

from __future__ import annotations

import email.message
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import requests

from .errors import ModelNotTrainedError, ServerError, ServerResponseError
from .multipart import parse_multipart

__all__ = [
    "InferResult",
    "detail_message",
    "filename_from_disposition",
    "infer_result",
    "json_body",
    "raise_for_error_status",
    "save_download",
]


@dataclass
class InferResult:
    """What ``POST /infer/{model}`` returned.

    Attributes:
        params: the JSON result parameters (``params`` part, or the whole JSON answer).
        label: the label file's bytes, or None when the server sent only JSON.
        filename: the label file's name as sent by the server (its suffix tells the format).
    """

    params: dict[str, Any] = field(default_factory=dict)
    label: bytes | None = None
    filename: str | None = None

    def save_label(self, directory: str | os.PathLike) -> str:
        """Write the label bytes into ``directory`` under the server's file name and return the path.

        Raises:
            ServerError: the answer carried no label file.
        """
        if self.label is None:
            raise ServerError(f"the inference answer carried no label file (params: {self.params})")
        name = os.path.basename(self.filename or "label.nii.gz") or "label.nii.gz"
        path = os.path.join(os.fspath(directory), name)
        with open(path, "wb") as f:
            f.write(self.label)
        return path


def detail_message(response: requests.Response) -> str:
    """The server's explanation of an error answer, as one line."""
    try:
        body = response.json()
    except ValueError:
        text = (response.text or "").strip().replace("\n", " ")
        return text[:300] or response.reason or "no message"
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": "..."}]
        items = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []))
                items.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
            else:
                items.append(str(item))
        return "; ".join(items)
    return str(detail)


def raise_for_error_status(response: requests.Response, method: str, path: str) -> None:
    """Raise the error an HTTP error answer (status 400 or more) stands for; return quietly otherwise.

    Raises:
        ModelNotTrainedError: 409 saying the model is not trained yet (the usseg server's wording).
        ServerResponseError: any other error status, with the server's message.
    """
    if response.status_code < 400:
        return
    detail = detail_message(response)
    if response.status_code == 409 and "not trained yet" in detail:
        named = re.search(r"model (\S+) is not trained yet", detail)
        model = named.group(1) if named else path.rstrip("/").rsplit("/", 1)[-1]
        raise ModelNotTrainedError(model, detail, method, path)
    raise ServerResponseError(response.status_code, detail, method, path)


def json_body(response: requests.Response) -> Any:
    """The answer's JSON body.

    Raises:
        ServerError: the body is not JSON.
    """
    try:
        return response.json()
    except ValueError as e:
        raise ServerError(f"expected JSON from {response.request.method} {response.url}, got "
                          f"{response.headers.get('Content-Type', 'no content type')}") from e


def infer_result(response: requests.Response) -> InferResult:
    """The label file and result parameters of an ``/infer`` answer (multipart, JSON or a bare file)."""
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("multipart/"):
        parts = parse_multipart(response.content, content_type)
        params_part = parts.get("params")
        result_params = json.loads(params_part.data.decode("utf-8")) if params_part and params_part.data else {}
        image_part = parts.get("image")
        if image_part is None:
            return InferResult(result_params or {})
        return InferResult(result_params or {}, image_part.data, image_part.filename)
    if content_type.startswith("application/json"):
        body = json_body(response)
        return InferResult(body if isinstance(body, dict) else {"result": body})
    name = filename_from_disposition(response.headers.get("Content-Disposition", ""))
    return InferResult({}, response.content, name)


def filename_from_disposition(value: str) -> str | None:
    """The bare file name of a ``Content-Disposition`` header, or None when it names none."""
    if not value:
        return None
    msg = email.message.Message()
    msg["Content-Disposition"] = value
    name = msg.get_filename()
    return os.path.basename(name) if name else None


def save_download(response: requests.Response, directory: str | os.PathLike, default_name: str) -> str:
    """Write a downloaded file into ``directory`` under the server's file name (else ``default_name``)."""
    name = filename_from_disposition(response.headers.get("Content-Disposition", "")) or default_name
    path = os.path.join(os.fspath(directory), os.path.basename(name))
    with open(path, "wb") as f:
        f.write(response.content)
    return path
