"""HTTP server and wiring of A2I Local.

The handler reads the request (http_parser.py), finds its route (routes.py), calls the
route's handler (handlers_*.py) and writes the answer in the format of the route's API:
rest-json for the A2I runtime, JSON 1.1 for SageMaker, plain JSON for the control API.
SigV4 signatures are not verified.

Each response (status line, headers and body) goes out in ONE sendall on a TCP_NODELAY
socket: written in two pieces, Nagle + delayed ACK stall a keep-alive client for the
peer's delayed-ACK timeout.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import errors, routes
from .config import VERSION as __version__
from .config import Options
from .events import EventSender
from .faults import Faults
from .handlers_local import ControlError, control_error
from .http_parser import MalformedRequest, parse_request_line, read_headers
from .request import Request
from .store import Store
from .tokens import TokenCodec
from .workforce import Workforce

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024  # InputContent is at most 3 MiB characters; JSON escaping can multiply that by 6
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_RUNTIME_JSON = "application/json"
_SAGEMAKER_JSON = "application/x-amz-json-1.1"
_CONTENT_TYPES = {routes.RUNTIME: _RUNTIME_JSON, routes.SAGEMAKER: _SAGEMAKER_JSON, routes.CONTROL: "application/json"}


class A2ILocalServer:
    """The whole emulator: store, faults, events, workforce, reaper and the HTTP server."""

    def __init__(self, options: Options):
        self.options = options
        self._startup_options = options.snapshot()
        self.store = Store(options)
        self.codec = TokenCodec(self.store.token_key)
        self.faults = Faults(options)
        # Events and the workforce run threads, so they exist only when asked for.
        self.events: EventSender | None = None
        if options.event_webhook or options.event_queue_url:
            self.events = EventSender(options)
            self.store.subscribe(self.events)
        self.workforce: Workforce | None = None
        if options.workforce:
            self.workforce = Workforce(self.store, options)
        self.httpd = _HTTPServer((options.host, options.port), _Handler)
        self.httpd.app = self
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def start(self) -> None:
        """Serve in daemon threads; returns at once (the socket is already listening)."""
        if self.events is not None:
            self.events.start()
        if self.workforce is not None:
            self.workforce.start()
        for target, name in ((self.httpd.serve_forever, "a2i-local-http"), (self._reap, "a2i-local-reaper")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Make serve_forever return and stop the server (safe to call from a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        if self._stop.is_set() and not self._threads:
            return
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.workforce is not None:
            self.workforce.stop(timeout)
        if self.events is not None:
            self.events.stop(timeout)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self.store.close()

    def _reap(self) -> None:
        """Apply expiry and Stopping -> Stopped even when no request comes in."""
        while not self._stop.wait(0.2):
            try:
                self.store.process_due()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("reaper failed")

    def reset(self) -> None:
        """Drop all state, restore the startup options and refill the fault buckets."""
        self.store.reset()
        self.options.restore(self._startup_options)
        self.faults.reset()

    def health(self) -> dict:
        return {
            "status": "ok",
            "version": __version__,
            "loops": self.store.count_loops(),
            "flow_definitions": self.store.flow_definitions.count(),
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "now": self.store.now().isoformat(),
            "workforce": self.workforce is not None,
            "events": self.events is not None,
            "faults": True,  # always on; each fault is off until configured
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: A2ILocalServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: botocore reuses connections
    disable_nagle_algorithm = True  # TCP_NODELAY on every accepted socket
    server_version = f"A2ILocal/{__version__}"

    def parse_request(self) -> bool:
        """The request line and headers, by http_parser instead of the stdlib's email-based parser.

        Same rules otherwise: HTTP/1.1 keeps the connection unless `Connection: close`,
        HTTP/1.0 closes it unless `keep-alive`, and `Expect: 100-continue` is answered.
        """
        self.command = None
        # Not the stdlib's HTTP/0.9 default: an error answer to a garbled request line
        # still gets a status line and headers (then the connection closes).
        self.request_version = "HTTP/1.0"
        self.close_connection = True
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = line
        try:
            self.command, self.path, self.request_version = parse_request_line(line)
            headers = read_headers(self.rfile)
        except MalformedRequest as exc:
            self.send_error(exc.status, exc.message)
            return False
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if headers.get("expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        request_id = str(uuid.uuid4())
        path, _, query = self.path.partition("?")
        api = routes.RUNTIME  # the error format until the path has been looked at
        try:
            body = self._read_body()
            # Apply due expiries and stops first, so no request sees a loop past its time.
            app.store.process_due()
            target = self.headers.get("X-Amz-Target", "")
            api, route, name = routes.resolve(method, path, target)
            if route is None:
                raise routes.no_route(api, method, path, target)
            if route.operation is not None:  # faults are injected into AWS operations, never the control API
                app.faults.before(route.operation)
            result = route.handler(app, Request(name, query, body))
            if api == routes.CONTROL:
                payload = json.dumps(result, separators=(",", ":"), default=str).encode()
            elif isinstance(result, str):  # JSON text built by the handler (ListHumanLoops)
                payload = result.encode()
            else:
                payload = json.dumps(result, separators=(",", ":")).encode()
            self._send(200, payload, _CONTENT_TYPES[api], request_id)
        except ControlError as exc:
            self._send_control_error(exc, request_id)
        except errors.AwsError as exc:
            if api == routes.CONTROL:
                self._send_control_error(control_error(exc), request_id)
            else:
                self._send_aws_error(exc, api == routes.SAGEMAKER, request_id)
        except Exception:
            log.exception("unexpected error handling %s %s", method, self.path)
            self._send_aws_error(errors.InternalServerException("An internal error occurred in A2I Local."),
                                 api == routes.SAGEMAKER, request_id)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                raise errors.SerializationException("Chunked request bodies are not supported; send Content-Length.")
            return b""
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            raise errors.SerializationException(f"Invalid Content-Length '{length}'.") from None
        if size > MAX_BODY:
            self.close_connection = True  # the unread body would corrupt the next request
            raise errors.ValidationException(f"Request body of {size} bytes exceeds the {MAX_BODY}-byte limit.")
        return self.rfile.read(size) if size else b""

    def _send_control_error(self, exc: ControlError, request_id: str) -> None:
        payload = {"error": exc.code, "message": exc.message}
        self._send(exc.status, json.dumps(payload, separators=(",", ":"), default=str).encode(), "application/json",
                   request_id)

    def _send_aws_error(self, exc: errors.AwsError, sagemaker: bool, request_id: str) -> None:
        if sagemaker:
            # JSON 1.1: the code travels in __type; client errors are 400
            # (docs/a2i-local.md, behaviour notes §1.4).
            status = exc.status if exc.status >= 500 else 400
            payload = {"__type": exc.code, "Message": exc.message}
            content_type = _SAGEMAKER_JSON
        else:
            status = exc.status
            payload = {"Message": exc.message}
            content_type = _RUNTIME_JSON
        self._send(status, json.dumps(payload).encode(), content_type, request_id,
                   extra=f"x-amzn-ErrorType: {exc.code}\r\n")

    def _send(self, status: int, body: bytes, content_type: str, request_id: str, extra: str = "") -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amzn-RequestId: {request_id}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"{extra}"
            f"{'Connection: close' + chr(13) + chr(10) if self.close_connection else ''}"
            "\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)  # one sendall (wbufsize is 0)

