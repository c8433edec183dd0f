"""The request line and headers of an HTTP/1.x request, parsed without the email package.

http.server parses headers with `email.parser`, a large share of the server's CPU per
ListHumanLoops page; a paginating client waits for every page, so that time is on its
critical path. This parser reads what the server needs and keeps the stdlib's limits:
a header line of at most MAX_HEADER_LINE bytes, at most MAX_HEADERS headers.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import BinaryIO

MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
VERSIONS = ("HTTP/1.0", "HTTP/1.1")


class Headers(dict):
    """Request headers by lower-cased name; `get`, `[]` and `in` ignore case like email.message."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.get(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


class MalformedRequest(Exception):
    """The request cannot be parsed; the server answers ``status`` and closes the connection."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_request_line(line: str) -> tuple[str, str, str]:
    """``GET /path HTTP/1.1`` (without its line ending) -> (method, path, version)."""
    words = line.split()
    if len(words) != 3 or words[2] not in VERSIONS:
        raise MalformedRequest(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({line!r})")
    method, path, version = words
    # As the stdlib does: '//x' would be read as a scheme-less absolute URI.
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return method, path, version


def read_headers(rfile: BinaryIO) -> Headers:
    """Read header lines up to the blank line that ends them; MalformedRequest when invalid."""
    headers = Headers()
    readline = rfile.readline
    for _ in range(MAX_HEADERS + 1):
        raw = readline(MAX_HEADER_LINE + 1)
        if len(raw) > MAX_HEADER_LINE:
            raise MalformedRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
        if raw in (b"\r\n", b"\n", b""):
            return headers
        name, colon, value = raw.decode("iso-8859-1").partition(":")
        if not colon:
            raise MalformedRequest(HTTPStatus.BAD_REQUEST, f"Bad header line ({raw!r})")
        headers[name.strip().lower()] = value.strip()
    raise MalformedRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
