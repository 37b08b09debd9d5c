"""Parsing of ``multipart/form-data`` HTTP responses without the removed ``cgi`` module.

MONAI Label answers ``POST /infer/{model}`` with ``output=all`` as ``multipart/form-data`` holding a ``params`` part
(JSON) and an ``image`` part (the label file). This module splits such a body on its boundary (RFC 2046 §5.1.1) and
reads each part's headers with the standard library's ``email`` parser; payload bytes are returned unchanged.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
from dataclasses import dataclass

from .errors import ServerError

__all__ = ["MultipartPart", "parse_content_type_boundary", "parse_multipart"]


@dataclass(frozen=True)
class MultipartPart:
    """One part of a multipart body.

    Attributes:
        name: the ``name`` parameter of its ``Content-Disposition`` header ("" when absent).
        filename: the ``filename`` parameter, or None.
        content_type: the part's ``Content-Type`` (default ``text/plain``).
        data: the payload bytes, exactly as sent.
    """

    name: str
    filename: str | None
    content_type: str
    data: bytes


def parse_content_type_boundary(content_type: str) -> str:
    """Return the ``boundary`` parameter of a ``multipart/*`` Content-Type header.

    Raises:
        ServerError: the header is not multipart or carries no boundary.
    """
    msg = email.message.Message()
    msg["Content-Type"] = content_type
    if msg.get_content_maintype() != "multipart":
        raise ServerError(f"expected a multipart response, got Content-Type {content_type!r}")
    boundary = msg.get_param("boundary")
    if not boundary or not isinstance(boundary, str):
        raise ServerError(f"multipart response without a boundary: Content-Type {content_type!r}")
    return boundary


def _parse_headers(raw: bytes) -> email.message.Message:
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw + b"\r\n\r\n")


def parse_multipart(body: bytes, content_type: str) -> dict[str, MultipartPart]:
    """Split a ``multipart/form-data`` body into its parts, keyed by part name.

    Args:
        body: the complete response body.
        content_type: the response's ``Content-Type`` header (gives the boundary).

    Returns:
        dict of part name → :class:`MultipartPart`, in body order.

    Raises:
        ServerError: the body is not well-formed multipart (no opening or closing delimiter, a part without a
            header block).

    Examples::

        parts = parse_multipart(response.content, response.headers["Content-Type"])
        params = json.loads(parts["params"].data)
        label_bytes = parts["image"].data
    """
    boundary = parse_content_type_boundary(content_type).encode("latin-1")
    delimiter = b"--" + boundary
    # The first delimiter may start the body; every later one is preceded by CRLF.
    if body.startswith(delimiter):
        body = b"\r\n" + body
    chunks = body.split(b"\r\n" + delimiter)
    if len(chunks) < 3:
        raise ServerError("malformed multipart response: fewer than one part between boundaries")
    if not chunks[-1].startswith(b"--"):
        raise ServerError("malformed multipart response: closing boundary missing (truncated body?)")
    parts: dict[str, MultipartPart] = {}
    for chunk in chunks[1:-1]:
        # Each chunk is: optional transport padding, CRLF, headers, CRLF CRLF, payload.
        line_end = chunk.find(b"\r\n")
        if line_end < 0:
            raise ServerError("malformed multipart response: part without headers")
        rest = chunk[line_end + 2 :]
        head_end = rest.find(b"\r\n\r\n")
        if head_end < 0:
            if rest.endswith(b"\r\n") or rest == b"":
                raw_headers, data = rest.rstrip(b"\r\n"), b""
            else:
                raise ServerError("malformed multipart response: part headers not terminated")
        else:
            raw_headers, data = rest[:head_end], rest[head_end + 4 :]
        headers = _parse_headers(raw_headers)
        name = headers.get_param("name", header="content-disposition") or ""
        filename = headers.get_param("filename", header="content-disposition")
        if isinstance(name, tuple):  # RFC 2231 encoded
            name = email.utils.collapse_rfc2231_value(name)
        if isinstance(filename, tuple):
            filename = email.utils.collapse_rfc2231_value(filename)
        content_type_part = headers.get("Content-Type", "text/plain")
        parts[str(name)] = MultipartPart(str(name), filename, content_type_part, data)
    return parts
