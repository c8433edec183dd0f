"""A2I Local's own HTTP request parsing (it replaces http.server's email-based header parser)."""

import socket

import pytest


def exchange(a2i, raw: bytes) -> bytes:
    """Send raw bytes on a fresh connection; return everything the server sends until it closes."""
    host, port = a2i.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_header_names_are_case_insensitive_and_connection_close_is_honoured(a2i):
    arn = a2i.create_flow_definition("http-case")
    body = b'{"HumanLoopName": "case-1", "FlowDefinitionArn": "%s", "HumanLoopInput": {"InputContent": "{}"}}' % arn.encode()
    raw = (
        b"POST /human-loops HTTP/1.1\r\nhost: x\r\ncontent-TYPE: application/json\r\n"
        b"CONTENT-LENGTH: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body
    # The server closing after one response is what lets exchange() return at all.
    response = exchange(a2i, raw)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"human-loop/case-1" in response


def test_keep_alive_serves_several_requests_on_one_connection(a2i):
    request = b"GET /_local/health HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /_local/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    response = exchange(a2i, request + request + last)
    assert response.count(b"HTTP/1.1 200 ") == 3


def test_http_1_0_closes_after_the_response(a2i):
    response = exchange(a2i, b"GET /_local/health HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /human-loops HTTP/2.0\r\n\r\n", b"400"),
        (b"GET /_local/health HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /_local/health HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
        (b"GET /_local/health HTTP/1.1\r\n" + b"X-H: 1\r\n" * 101 + b"\r\n", b"431"),
    ],
    ids=["bad-request-line", "unsupported-version", "header-without-colon", "header-too-long", "too-many-headers"],
)
def test_malformed_requests_get_a_clear_4xx_and_the_connection_closes(a2i, raw, status):
    response = exchange(a2i, raw)
    assert response.split(b" ", 2)[1] == status
