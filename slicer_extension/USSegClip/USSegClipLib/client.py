"""The USSegClip module's client for MONAI Label's REST API (version 0.8.x): one method per endpoint it uses.

:class:`MonaiLabelClient` builds each request (query, JSON or multipart form with the files) and reads its answer
(:mod:`USSegClipLib.answers`); sending it, with timeouts, retries of idempotent requests and the token, is
:class:`USSegClipLib.transport.ServerTransport`'s job. Errors are :mod:`USSegClipLib.errors` exceptions that carry
the server's own message.
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO
from urllib.parse import quote

from .answers import InferResult, infer_result, save_download
from .errors import ServerResponseError
from .transport import ServerTransport

__all__ = ["InferResult", "MonaiLabelClient"]


class MonaiLabelClient(ServerTransport):
    """Client for one MONAI Label server.

    Args:
        base_url: server address, e.g. ``http://127.0.0.1:8000``.
        token: optional bearer token (servers started with authentication enabled).
        username, password: log in to the server's realm instead (see :mod:`USSegClipLib.auth`): the token is
            fetched before the first request, renewed before it expires, and fetched anew once after a 401.
        token_url: the realm's token endpoint when the client reaches it at another address than the server.
        timeout: seconds to wait for the connection and for each read; inference on a long clip may need more,
            see ``infer_timeout``.
        infer_timeout: read timeout for ``/infer`` requests.
        retries: how many times an idempotent request is repeated after a connection failure or a 502/503/504.
        backoff: back-off factor in seconds between retries (doubles each time).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL, or a numeric setting is out of range.

    Examples::

        client = MonaiLabelClient("http://127.0.0.1:8000")
        info = client.info()                      # models, labels, strategies
        sample = client.next_sample("random")     # {"id": ..., ...}
        result = client.infer("dsanet", image_id=sample["id"])
    """

    def info(self) -> dict[str, Any]:
        """``GET /info/``: app name, models (with their labels), trainers, strategies, datastore summary."""
        return self._json(self._request("GET", "/info/"))

    def datastore(self, output: str = "all") -> dict[str, Any]:
        """``GET /datastore/?output=...`` (``all``, ``stats`` or ``train``)."""
        return self._json(self._request("GET", "/datastore/", params={"output": output}))

    def next_sample(self, strategy: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /activelearning/{strategy}`` with a JSON body; returns ``{}`` when nothing is left to label."""
        return self._json(self._request("POST", f"/activelearning/{quote(strategy, safe='')}", json=params or {}))

    def download_image(self, image_id: str, directory: str | os.PathLike) -> str:
        """``GET /datastore/image?image=ID``: save the image into ``directory``; returns the file path."""
        response = self._request("GET", "/datastore/image", params={"image": image_id}, timeout=self.infer_timeout)
        return save_download(response, directory, image_id)

    def download_label(self, label_id: str, tag: str, directory: str | os.PathLike) -> str:
        """``GET /datastore/label?label=ID&tag=TAG``: save a stored label into ``directory``; returns the path."""
        response = self._request("GET", "/datastore/label", params={"label": label_id, "tag": tag},
                                 timeout=self.infer_timeout)
        return save_download(response, directory, f"{label_id}.nii.gz")

    def upload_image(self, path: str | os.PathLike, image_id: str | None = None) -> str:
        """``PUT /datastore/image``: add a file to the server's datastore; returns the image id it got."""
        params = {"image": image_id} if image_id else None
        with open(path, "rb") as f:
            files = {"file": _file_part(path, f)}
            response = self._request("PUT", "/datastore/image", params=params, files=files, timeout=self.infer_timeout)
        return self._json(response)["image"]

    def infer(
        self,
        model: str,
        image_id: str | None = None,
        file: str | os.PathLike | None = None,
        params: dict[str, Any] | None = None,
    ) -> InferResult:
        """``POST /infer/{model}?output=all`` on a datastore image (``image_id``) or an uploaded ``file``.

        Raises:
            ValueError: neither or both of ``image_id`` and ``file`` are given.
            ServerError: the server failed or answered something that is not a result.
        """
        query = _infer_query(image_id, file)
        data = {"params": json.dumps(params or {})}
        path = f"/infer/{quote(model, safe='')}"
        if file is not None:
            with open(file, "rb") as f:
                files = {"file": _file_part(file, f)}
                response = self._request("POST", path, params=query, data=data, files=files,
                                         timeout=self.infer_timeout)
        else:
            response = self._request("POST", path, params=query, data=data, timeout=self.infer_timeout)
        return infer_result(response)

    def refine(
        self,
        model: str,
        label_file: str | os.PathLike,
        corrected_frames: list[int],
        image_id: str | None = None,
        file: str | os.PathLike | None = None,
        params: dict[str, Any] | None = None,
    ) -> InferResult:
        """``POST /infer/{model}`` of a refinement task (e.g. ``dsanet_refine``): the clip (datastore id or upload),
        its partly corrected label (multipart ``label``) and ``params["corrected_frames"]``.

        Args:
            model: the refinement task, e.g. ``"dsanet_refine"``.
            label_file: (X, Y, T) label with the cine's grid; the server reads only the corrected frames.
            corrected_frames: 0-based indices of the frames the user drew or checked (not empty).
            image_id: the clip in the datastore, or
            file: the clip to upload.
            params: further parameters (``max_steps``, ``time_budget_s``, ``seed``, ``result_extension``).

        Raises:
            ValueError: neither or both of ``image_id`` and ``file``, or no corrected frame.
            ServerError: the server refused (4xx naming the problem; 429 when too many refinements run) or failed.
        """
        query = _infer_query(image_id, file)
        frames = sorted({int(f) for f in corrected_frames})
        if not frames:
            raise ValueError("refinement needs at least one corrected frame")
        data = {"params": json.dumps({**(params or {}), "corrected_frames": frames})}
        path = f"/infer/{quote(model, safe='')}"
        with open(label_file, "rb") as lf:
            files = {"label": _file_part(label_file, lf)}
            if file is None:
                response = self._request("POST", path, params=query, data=data, files=files,
                                         timeout=self.infer_timeout)
            else:
                with open(file, "rb") as f:
                    files["file"] = _file_part(file, f)
                    response = self._request("POST", path, params=query, data=data, files=files,
                                             timeout=self.infer_timeout)
        return infer_result(response)

    def save_label(
        self,
        image_id: str,
        label_file: str | os.PathLike,
        tag: str = "final",
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``PUT /datastore/label?image=ID&tag=TAG`` with the label file (multipart ``label``)."""
        with open(label_file, "rb") as f:
            files = {"label": _file_part(label_file, f)}
            response = self._request(
                "PUT",
                "/datastore/label",
                params={"image": image_id, "tag": tag},
                data={"params": json.dumps(params or {})},
                files=files,
            )
        return self._json(response)

    def start_training(self, model: str | None = None, params: dict[str, Any] | None = None,
                       enqueue: bool = False) -> dict[str, Any]:
        """``POST /train/{model}`` (or ``/train/`` for every trainer) with a JSON body of parameters.

        A 429 answer means a training task is already running (``ServerResponseError.status == 429``).
        """
        path = f"/train/{quote(model, safe='')}" if model else "/train/"
        query = {"enqueue": "true"} if enqueue and model else None
        return self._json(self._request("POST", path, params=query, json=params or {}))

    def training_status(self, all_tasks: bool = False, check_if_running: bool = False) -> dict[str, Any] | None:
        """``GET /train/``: the latest training task (``status``: SUBMITTED, RUNNING, DONE, ERROR, STOPPED).

        Returns None when the server has no training task (it answers 404 then).
        """
        query = {"all": str(all_tasks).lower(), "check_if_running": str(check_if_running).lower()}
        try:
            return self._json(self._request("GET", "/train/", params=query))
        except ServerResponseError as e:
            if e.status == 404:
                return None
            raise

    def stop_training(self) -> dict[str, Any] | None:
        """``DELETE /train/``: stop the running training task (None when none was running)."""
        return self._json(self._request("DELETE", "/train/"))

    def model_info(self, model: str) -> dict[str, Any] | None:
        """``GET /model/info/{model}``: checksum and modification time of the live weights (None if none yet)."""
        try:
            return self._json(self._request("GET", f"/model/info/{quote(model, safe='')}"))
        except ServerResponseError as e:
            if e.status == 404:
                return None
            raise


def _infer_query(image_id: str | None, file: str | os.PathLike | None) -> dict[str, str]:
    """The query of ``POST /infer``: every output, on the datastore image ``image_id`` or on an uploaded ``file``.

    Raises:
        ValueError: neither or both of ``image_id`` and ``file`` are given.
    """
    if (image_id is None) == (file is None):
        raise ValueError("give exactly one of image_id (a datastore image) or file (a file to upload)")
    query = {"output": "all"}
    if image_id is not None:
        query["image"] = image_id
    return query


def _file_part(path: str | os.PathLike, stream: BinaryIO) -> tuple[str, BinaryIO, str]:
    """A multipart file field: the file's bare name, its open stream and a binary content type."""
    return os.path.basename(os.fspath(path)), stream, "application/octet-stream"
