"""A small client for MONAI Label's REST API (version 0.8.x), as the USSegClip module uses it.

Every request has a timeout; only idempotent requests (GET, HEAD) are retried, on connection failures and on
502/503/504 answers, with exponential back-off. POST/PUT/DELETE are sent once (connection attempts that never
reached the server are retried, because nothing was sent). Errors become :mod:`USSegClipLib.errors` exceptions that
carry the server's own message (FastAPI's ``detail``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .auth import TokenProvider
from .errors import (
    ModelNotTrainedError,
    ServerError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from .multipart import parse_multipart

__all__ = ["InferResult", "MonaiLabelClient"]

logger = logging.getLogger(__name__)


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


def _detail_message(response: requests.Response) -> str:
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


class MonaiLabelClient:
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

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        infer_timeout: float = 600.0,
        retries: int = 2,
        backoff: float = 0.3,
        username: str | None = None,
        password: str | None = None,
        token_url: str | None = None,
    ):
        base_url = (base_url or "").strip()
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"server URL must start with http:// or https://, got {base_url!r}")
        if timeout <= 0 or infer_timeout <= 0:
            raise ValueError(f"timeouts must be positive, got timeout={timeout}, infer_timeout={infer_timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.infer_timeout = float(infer_timeout)
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        if token and username:
            raise ValueError("give either a token or a username and password, not both")
        self.auth = (TokenProvider(self.base_url, username, password or "", self.timeout, token_url)
                     if username else None)
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def clone(self) -> MonaiLabelClient:
        """A client for the same server with its own HTTP session (for a request made in another thread)."""
        twin = MonaiLabelClient.__new__(MonaiLabelClient)
        twin.base_url, twin.timeout, twin.infer_timeout = self.base_url, self.timeout, self.infer_timeout
        twin.auth = getattr(self, "auth", None)  # a shared token provider (logins are serialised there)
        twin.session = requests.Session()
        twin.session.headers.update(self.session.headers)
        for prefix, adapter in self.session.adapters.items():
            twin.session.mount(prefix, HTTPAdapter(max_retries=adapter.max_retries))
        return twin

    # ------------------------------------------------------------------ plumbing
    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _request(self, method: str, path: str, timeout: float | None = None, **kwargs) -> requests.Response:
        auth = getattr(self, "auth", None)
        if auth is None:
            return self._request_once(method, path, timeout, **kwargs)
        try:
            return self._request_once(method, path, timeout, headers=auth.header(), **kwargs)
        except ServerResponseError as e:
            if e.status != 401 or not auth.invalidate():
                raise
        logger.info("%s %s: token refused (401); logging in again", method, path)
        for item in (kwargs.get("files") or {}).values():  # uploads are sent again from their start
            stream = item[1] if isinstance(item, tuple) else item
            if hasattr(stream, "seek"):
                stream.seek(0)
        return self._request_once(method, path, timeout, headers=auth.header(), **kwargs)

    def _request_once(self, method: str, path: str, timeout: float | None = None, **kwargs) -> requests.Response:
        url = self._url(path)
        logger.debug("%s %s", method, url)
        try:
            response = self.session.request(method, url, timeout=(self.timeout, timeout or self.timeout), **kwargs)
        except requests.exceptions.Timeout as e:
            raise ServerTimeoutError(f"MONAI Label server at {self.base_url} did not answer {method} {path} "
                                     f"within {timeout or self.timeout:g} s") from e
        except requests.exceptions.ConnectionError as e:
            # after urllib3 retries a read timeout arrives as ConnectionError(MaxRetryError(reason=ReadTimeoutError))
            reason = getattr(e.args[0], "reason", None) if e.args else None
            timed_out = isinstance(reason, urllib3.exceptions.TimeoutError)
            if timed_out and not isinstance(reason, urllib3.exceptions.NewConnectionError):  # the latter: refused
                raise ServerTimeoutError(f"MONAI Label server at {self.base_url} did not answer {method} {path} "
                                         f"within {timeout or self.timeout:g} s") from e
            raise ServerUnavailableError(
                f"cannot reach the MONAI Label server at {self.base_url} ({type(e).__name__}); "
                "is it running and is the address right?"
            ) from e
        except requests.exceptions.RequestException as e:
            raise ServerError(f"request {method} {url} failed: {e}") from e
        if response.status_code >= 400:
            detail = _detail_message(response)
            if response.status_code == 409 and "not trained yet" in detail:
                named = re.search(r"model (\S+) is not trained yet", detail)
                model = named.group(1) if named else path.rstrip("/").rsplit("/", 1)[-1]
                raise ModelNotTrainedError(model, detail, method, path)
            raise ServerResponseError(response.status_code, detail, method, path)
        return response

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as e:
            raise ServerError(f"expected JSON from {response.request.method} {response.url}, got "
                              f"{response.headers.get('Content-Type', 'no content type')}") from e

    # ------------------------------------------------------------------ API
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
        name = _filename_from_disposition(response.headers.get("Content-Disposition", "")) or image_id
        path = os.path.join(os.fspath(directory), os.path.basename(name))
        with open(path, "wb") as f:
            f.write(response.content)
        return path

    def download_label(self, label_id: str, tag: str, directory: str | os.PathLike) -> str:
        """``GET /datastore/label?label=ID&tag=TAG``: save a stored label into ``directory``; returns the path."""
        response = self._request("GET", "/datastore/label", params={"label": label_id, "tag": tag},
                                 timeout=self.infer_timeout)
        name = _filename_from_disposition(response.headers.get("Content-Disposition", "")) or f"{label_id}.nii.gz"
        path = os.path.join(os.fspath(directory), os.path.basename(name))
        with open(path, "wb") as f:
            f.write(response.content)
        return path

    def upload_image(self, path: str | os.PathLike, image_id: str | None = None) -> str:
        """``PUT /datastore/image``: add a file to the server's datastore; returns the image id it got."""
        params = {"image": image_id} if image_id else None
        with open(path, "rb") as f:
            files = {"file": (os.path.basename(os.fspath(path)), f, "application/octet-stream")}
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
        if (image_id is None) == (file is None):
            raise ValueError("give exactly one of image_id (a datastore image) or file (a file to upload)")
        query = {"output": "all"}
        if image_id is not None:
            query["image"] = image_id
        data = {"params": json.dumps(params or {})}
        path = f"/infer/{quote(model, safe='')}"
        if file is not None:
            with open(file, "rb") as f:
                files = {"file": (os.path.basename(os.fspath(file)), f, "application/octet-stream")}
                response = self._request("POST", path, params=query, data=data, files=files,
                                         timeout=self.infer_timeout)
        else:
            response = self._request("POST", path, params=query, data=data, timeout=self.infer_timeout)
        return _infer_result(response)

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
        if (image_id is None) == (file is None):
            raise ValueError("give exactly one of image_id (a datastore image) or file (a file to upload)")
        frames = sorted({int(f) for f in corrected_frames})
        if not frames:
            raise ValueError("refinement needs at least one corrected frame")
        query = {"output": "all"}
        if image_id is not None:
            query["image"] = image_id
        data = {"params": json.dumps({**(params or {}), "corrected_frames": frames})}
        path = f"/infer/{quote(model, safe='')}"
        with open(label_file, "rb") as lf:
            files = {"label": (os.path.basename(os.fspath(label_file)), lf, "application/octet-stream")}
            if file is None:
                response = self._request("POST", path, params=query, data=data, files=files,
                                         timeout=self.infer_timeout)
            else:
                with open(file, "rb") as f:
                    files["file"] = (os.path.basename(os.fspath(file)), f, "application/octet-stream")
                    response = self._request("POST", path, params=query, data=data, files=files,
                                             timeout=self.infer_timeout)
        return _infer_result(response)

    def save_label(
        self,
        image_id: str,
        label_file: str | os.PathLike,
        tag: str = "final",
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``PUT /datastore/label?image=ID&tag=TAG`` with the label file (multipart ``label``)."""
        with open(label_file, "rb") as f:
            files = {"label": (os.path.basename(os.fspath(label_file)), f, "application/octet-stream")}
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

    def close(self) -> None:
        """Close the underlying HTTP session."""
        self.session.close()

    def __enter__(self) -> MonaiLabelClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _infer_result(response: requests.Response) -> InferResult:
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
        body = MonaiLabelClient._json(response)
        return InferResult(body if isinstance(body, dict) else {"result": body})
    name = _filename_from_disposition(response.headers.get("Content-Disposition", ""))
    return InferResult({}, response.content, name)


def _filename_from_disposition(value: str) -> str | None:
    if not value:
        return None
    import email.message

    msg = email.message.Message()
    msg["Content-Disposition"] = value
    name = msg.get_filename()
    return os.path.basename(name) if name else None
