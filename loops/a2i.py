"""The one module that talks to AWS: A2I runtime, SageMaker flow definitions, S3.

Nothing else in the project imports boto3 or botocore. Endpoints, region and
credentials come from boto3's own standard environment variables and chain
(AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME,
AWS_ENDPOINT_URL_SAGEMAKER, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SQS, AWS_PROFILE,
roles...), so pointing the product at A2I Local or at AWS is configuration only.
SQS carries A2I's EventBridge events to `manage.py consume_events`.

Errors: botocore's ClientError propagates from the call functions (use
`error_code` / `error_message` to read it); an unreachable endpoint or missing
credentials raises `A2IUnavailable` with a one-line message instead. A stop or delete
that was sent but got no answer (read timeout, connection dropped) raises
`A2IOutcomeUnknown`, a kind of A2IUnavailable: A2I may have carried it out.

Clients are cached per process and closed (`close()`, which releases their connection
pools) when the cache drops them: `reset_clients()`, or `close_clients()` at worker
shutdown.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlparse

import boto3
import botocore.session
import ciso8601
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.utils import parse_timestamp as botocore_parse_timestamp
from django.conf import settings
from urllib3.exceptions import HTTPError as Urllib3HTTPError

__all__ = [
    "A2IOutcomeUnknown",
    "A2IUnavailable",
    "ClientError",
    "OutputUnavailable",
    "delete_event_messages",
    "delete_human_loop",
    "describe_flow_definition",
    "describe_human_loop",
    "error_code",
    "error_message",
    "iter_flow_definitions",
    "iter_loop_pages",
    "open_human_loop_output",
    "listing_client",
    "read_human_loop_output",
    "receive_event_messages",
    "region_of_arn",
    "region_of_queue_url",
    "close_clients",
    "reset_clients",
    "runtime_client",
    "s3_client",
    "sagemaker_client",
    "sqs_client",
    "stop_human_loop",
]


class A2IUnavailable(Exception):
    """The endpoint cannot be reached or no credentials were found. The message is one line."""


class A2IOutcomeUnknown(A2IUnavailable):
    """A stop or delete reached the network but no answer came back: A2I may have done it."""


class OutputUnavailable(Exception):
    """A loop's output.json cannot be read; the message says why, for a human.

    `code` names the cause for callers that treat causes differently: the S3 error code
    (NoSuchKey, AccessDenied, ...), "unreachable", "stream" (the connection broke while
    reading), "uri" (not an S3 object URI) or "error".
    """

    def __init__(self, message: str, code: str = "error"):
        super().__init__(message)
        self.code = code


# --- clients -----------------------------------------------------------------

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[tuple[str, str, str], object] = {}
# Per thread: whether an attempt of the current stop/delete call may have reached A2I.
_attempts = threading.local()
# ThrottlingExceptions answered to each listing client so far (by region): a listing
# compares the number before and after to learn that A2I is limiting its rate.
_listing_throttles: dict[str, int] = {}


def parse_timestamp(value):
    """botocore timestamp parser: ciso8601 for ISO-8601 strings, botocore's own otherwise.

    botocore's default (dateutil) is the bottleneck of a listing client; ciso8601 is
    several times faster (docs/performance.md). SageMaker's JSON 1.1 sends epoch numbers and
    S3 sends RFC 822 headers: those fall back to botocore's parser.
    """
    if isinstance(value, str):
        try:
            return ciso8601.parse_datetime(value)
        except ValueError:
            pass
    return botocore_parse_timestamp(value)


def _get_session() -> boto3.session.Session:
    global _session
    if _session is None:
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        _session = boto3.session.Session(botocore_session=core)
    return _session


def _config(kind: str) -> Config:
    # `total_max_attempts` counts the first call too (botocore's `max_attempts`
    # counts retries only), so A2I_MAX_ATTEMPTS means what it says.
    if kind == "interactive":
        timeout = settings.A2I_INTERACTIVE_TIMEOUT
        return Config(
            retries={"mode": "standard", "total_max_attempts": settings.A2I_INTERACTIVE_MAX_ATTEMPTS},
            connect_timeout=timeout,
            read_timeout=timeout,
        )
    return Config(
        # The listing client (the sync's slices) uses "adaptive": standard retries plus a
        # client-side rate limiter that every thread using the client shares. After a
        # ThrottlingException the client as a whole slows down (and speeds up again as
        # calls succeed), so concurrent slices back off together instead of each retrying
        # on its own schedule. Other background calls (bulk actions) keep "standard"
        # retries and their own backoff (services.loop_actions).
        retries={"mode": "adaptive" if kind == "listing" else "standard", "total_max_attempts": settings.A2I_MAX_ATTEMPTS},
        connect_timeout=settings.A2I_CONNECT_TIMEOUT,
        read_timeout=settings.A2I_READ_TIMEOUT,
        # One client serves every thread of a process (the sync's slices, bulk actions,
        # the answers' concurrent reads of output.json).
        max_pool_connections=max(20, settings.A2I_SYNC_SLICES + 4, settings.A2I_ANSWERS_CONCURRENCY),
    )


def _client(service: str, region: str, kind: str = "background"):
    key = (service, region, kind)
    client = _clients.get(key)
    if client is None:
        # Creating clients from one session is not thread-safe; using them is.
        with _lock:
            client = _clients.get(key)
            if client is None:
                config = _config(kind)
                if service == "sqs":
                    # A long poll holds the connection open for its whole wait.
                    config = config.merge(Config(read_timeout=max(settings.A2I_READ_TIMEOUT, LONG_POLL_SECONDS + 10)))
                client = _get_session().client(service, region_name=region, config=config)
                if service == "sagemaker-a2i-runtime":
                    client.meta.events.register("needs-retry.sagemaker-a2i-runtime", _note_attempt)
                if kind == "listing":
                    client.meta.events.register("needs-retry.sagemaker-a2i-runtime.ListHumanLoops",
                                                functools.partial(_note_listing_throttle, region))
                _clients[key] = client
    return client


def runtime_client(region: str, *, interactive: bool = False):
    """The A2I runtime client (sagemaker-a2i-runtime) for `region`, cached per process.

    `interactive=True` gives the fail-fast client for calls a person waits on.
    """
    return _client("sagemaker-a2i-runtime", region, "interactive" if interactive else "background")


def listing_client(region: str):
    """The A2I runtime client that lists loops (the sync), cached per process: adaptive
    retry mode, one rate limiter shared by every slice of every sync in the process."""
    return _client("sagemaker-a2i-runtime", region, "listing")


def sagemaker_client(region: str):
    """The SageMaker client (flow definitions) for `region`, cached per process."""
    return _client("sagemaker", region)


def s3_client(region: str, *, interactive: bool = False):
    """The S3 client (output.json) for `region`, cached per process."""
    return _client("s3", region, "interactive" if interactive else "background")


def sqs_client(region: str):
    """The SQS client (A2I's events, delivered to a queue) for `region`, cached per process."""
    return _client("sqs", region)


def close_clients() -> int:
    """Close every cached client (releasing its connection pool) and forget it; returns how many.

    Called when the cache is dropped and at Celery worker shutdown, so connections to
    AWS do not outlive their clients.
    """
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        try:
            client.close()
        except Exception:  # closing is best effort: a pool that fails to close is gone anyway
            logger.warning("could not close an AWS client", exc_info=True)
    return len(clients)


def reset_clients() -> None:
    """Close and forget cached clients and the session, so changed AWS_* variables take effect (tests)."""
    global _session
    close_clients()
    with _lock:
        _session = None


# --- errors ------------------------------------------------------------------


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ClientError (e.g. "ResourceNotFoundException"), else None."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") or None
    return None


def error_message(exc: BaseException) -> str:
    """A one-line human message for any exception raised by this module."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Error"
        message = error.get("Message") or str(exc)
        operation = getattr(exc, "operation_name", "")
        prefix = f"{operation}: " if operation else ""
        return " ".join(f"{prefix}{code}: {message}".split())
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _unavailable(exc: BaseException) -> A2IUnavailable:
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        message = (
            "AWS credentials not found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            f"AWS_PROFILE or an instance role ({' '.join(str(exc).split())})"
        )
    elif isinstance(exc, NoRegionError):
        message = "no AWS region configured: set A2I_REGIONS or AWS_DEFAULT_REGION"
    else:
        message = f"AWS endpoint unreachable: {' '.join(str(exc).split())}"
    return A2IUnavailable(message)


# Connection-level failures (refused, timed out, closed: after botocore's retries) and
# missing credentials. ClientError (an answer from the service) is deliberately not
# here: it propagates.
_UNAVAILABLE = (BotoConnectionError, HTTPClientError, NoCredentialsError, PartialCredentialsError, NoRegionError)


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc


def _note_listing_throttle(region: str, response=None, **kwargs) -> None:
    if response is not None and (response[1].get("Error") or {}).get("Code") == "ThrottlingException":
        with _lock:
            _listing_throttles[region] = _listing_throttles.get(region, 0) + 1


def listing_throttles(region: str) -> int:
    """ThrottlingExceptions A2I has answered this process's listing client in `region` (retries included)."""
    return _listing_throttles.get(region, 0)


def _note_attempt(caught_exception=None, **kwargs) -> None:
    # botocore emits needs-retry after every attempt, before it decides to retry; a read
    # timeout or a dropped connection means the request was sent and may have been
    # carried out, whatever later attempts say.
    if isinstance(caught_exception, (ReadTimeoutError, ConnectionClosedError)):
        _attempts.maybe_received = True


def _call_sent(fn, *args, **kwargs):
    """`_call` for calls that change A2I: A2IOutcomeUnknown when any attempt may have reached it."""
    _attempts.maybe_received = False
    try:
        return fn(*args, **kwargs)
    except _UNAVAILABLE as exc:
        if getattr(_attempts, "maybe_received", False) or isinstance(exc, (ReadTimeoutError, ConnectionClosedError)):
            raise A2IOutcomeUnknown(f"no answer from A2I, which may have received the request: {' '.join(str(exc).split())}") from exc
        raise _unavailable(exc) from exc
    finally:
        _attempts.maybe_received = False


# --- A2I runtime ---------------------------------------------------------------


def iter_loop_pages(
    region: str,
    flow_definition_arn: str,
    *,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    sort_order: str = "Ascending",
    page_size: int = 100,
) -> Iterator[list[dict]]:
    """Yield ListHumanLoops pages (lists of HumanLoopSummaries dicts) for one flow definition.

    `created_after` / `created_before` are sent as CreationTimeAfter / CreationTimeBefore
    (docs/a2i-local.md §2: at or after / strictly before, as A2I Local implements them).
    One HTTP call per page. Raises ClientError or A2IUnavailable from the call
    that failed; pages already yielded stay valid.
    """
    params = {"FlowDefinitionArn": flow_definition_arn, "SortOrder": sort_order}
    if created_after is not None:
        params["CreationTimeAfter"] = created_after
    if created_before is not None:
        params["CreationTimeBefore"] = created_before
    paginator = listing_client(region).get_paginator("list_human_loops")
    for page in _pages(paginator.paginate(**params, PaginationConfig={"PageSize": page_size})):
        yield page.get("HumanLoopSummaries", [])


def _pages(pages) -> Iterator[dict]:
    """A paginator's pages, with unreachable endpoints and missing credentials as A2IUnavailable.

    The page requests happen inside the paginator's iteration, so the error has to be
    caught around `next()`, not around the call that built the paginator.
    """
    pages = iter(pages)
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        yield page


def describe_human_loop(region: str, name: str, *, interactive: bool = False) -> dict:
    """DescribeHumanLoop. ResourceNotFoundException (a ClientError) when it does not exist.

    `interactive=True` when a person waits for the answer: fewer attempts, shorter timeouts.
    """
    response = _call(runtime_client(region, interactive=interactive).describe_human_loop, HumanLoopName=name)
    response.pop("ResponseMetadata", None)
    return response


def stop_human_loop(region: str, name: str, *, interactive: bool = False) -> None:
    """StopHumanLoop: the loop goes to Stopping, then Stopped.

    A2IOutcomeUnknown when it was sent but not answered; `interactive=True` for the
    fail-fast client (a person waits).
    """
    _call_sent(runtime_client(region, interactive=interactive).stop_human_loop, HumanLoopName=name)


def delete_human_loop(region: str, name: str, *, interactive: bool = False) -> None:
    """DeleteHumanLoop: only Completed, Failed or Stopped loops can be deleted.

    A2IOutcomeUnknown when it was sent but not answered; `interactive=True` for the
    fail-fast client (a person waits).
    """
    _call_sent(runtime_client(region, interactive=interactive).delete_human_loop, HumanLoopName=name)


# --- SageMaker flow definitions ---------------------------------------------


def iter_flow_definitions(region: str) -> Iterator[dict]:
    """Yield every FlowDefinitionSummaries dict of `region` (ListFlowDefinitions, paginated)."""
    paginator = sagemaker_client(region).get_paginator("list_flow_definitions")
    for page in _pages(paginator.paginate()):
        yield from page.get("FlowDefinitionSummaries", [])


def describe_flow_definition(region: str, name: str) -> dict:
    """DescribeFlowDefinition (by name or ARN). ResourceNotFound (ClientError) when gone."""
    response = _call(sagemaker_client(region).describe_flow_definition, FlowDefinitionName=name)
    response.pop("ResponseMetadata", None)
    return response


# --- S3 output -----------------------------------------------------------------


OUTPUT_CHUNK_BYTES = 64 * 1024


@dataclass
class OutputObject:
    """An output.json being read from S3: its metadata, and its body as a stream of chunks.

    `size` is the whole object's size even when a ranged read asked for less. Use it as
    a context manager (or call close()) so an unread body releases its connection.
    """

    uri: str
    size: int | None
    last_modified: datetime | None
    etag: str
    content_type: str
    _body: object = field(default=None, repr=False)

    def chunks(self, chunk_size: int = OUTPUT_CHUNK_BYTES) -> Iterator[bytes]:
        """The body, chunk by chunk. A connection that breaks mid-way raises OutputUnavailable."""
        if self._body is None:
            return
        try:
            yield from self._body.iter_chunks(chunk_size)
        except (BotoCoreError, Urllib3HTTPError, OSError) as exc:
            raise OutputUnavailable(f"Reading {self.uri} stopped half-way: {error_message(exc)}", "stream") from exc

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def __enter__(self) -> OutputObject:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_human_loop_output(
    output_s3_uri: str, region: str, *, interactive: bool = False, max_bytes: int | None = None
) -> OutputObject:
    """GetObject of a loop's output.json, streamed: nothing of the body is read yet.

    `max_bytes`: a ranged read of the first max_bytes + 1 bytes only (`size` still says
    how large the whole object is), so a caller with a size cap never transfers a huge
    file. `interactive=True` when a person waits: the fail-fast client. Raises
    OutputUnavailable (bad URI, missing object or bucket, no permission, unreachable S3).
    """
    bucket, key = _split_s3_uri(output_s3_uri)
    params = {"Bucket": bucket, "Key": key}
    if max_bytes is not None:
        params["Range"] = f"bytes=0-{max_bytes}"
    try:
        response = s3_client(region, interactive=interactive).get_object(**params)
    except ClientError as exc:
        if error_code(exc) == "InvalidRange":
            # A range of an empty object is unsatisfiable: the object exists and is empty.
            return OutputObject(output_s3_uri, 0, None, "", "")
        raise _output_error(exc, output_s3_uri, bucket) from exc
    except _UNAVAILABLE as exc:
        raise OutputUnavailable(f"Cannot read {output_s3_uri}: {_unavailable(exc)}", "unreachable") from exc
    except BotoCoreError as exc:
        raise OutputUnavailable(f"Cannot read {output_s3_uri}: {error_message(exc)}") from exc
    size = response.get("ContentLength")
    content_range = response.get("ContentRange") or ""  # "bytes 0-1048576/5242880"
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        size = int(content_range.rsplit("/", 1)[1])
    return OutputObject(
        uri=output_s3_uri,
        size=size,
        last_modified=response.get("LastModified"),
        etag=(response.get("ETag") or "").strip('"'),
        content_type=response.get("ContentType") or "",
        _body=response["Body"],
    )


def read_human_loop_output(output_s3_uri: str, region: str) -> dict:
    """Read and parse a loop's output.json from S3, whole (the fail-fast client).

    Raises OutputUnavailable with a message for a human: bad URI, missing object,
    no permission, unreachable endpoint, not JSON. No size or depth cap: for untrusted
    files use open_human_loop_output with loops.services.output_json.
    """
    with open_human_loop_output(output_s3_uri, region, interactive=True) as output:
        body = b"".join(output.chunks())
    try:
        return json.loads(body)
    except ValueError as exc:
        raise OutputUnavailable(f"The output at {output_s3_uri} is not valid JSON: {exc}", "json") from exc


def _split_s3_uri(output_s3_uri: str) -> tuple[str, str]:
    parsed = urlparse(output_s3_uri or "")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not bucket or not key:
        raise OutputUnavailable(f"Not an S3 object URI: {output_s3_uri!r}", "uri")
    return bucket, key


def _output_error(exc: ClientError, output_s3_uri: str, bucket: str) -> OutputUnavailable:
    code = error_code(exc) or ""
    if code in ("NoSuchKey", "404", "NotFound"):
        return OutputUnavailable(f"The output does not exist (yet): {output_s3_uri}", "NoSuchKey")
    if code == "NoSuchBucket":
        return OutputUnavailable(f"The output bucket {bucket!r} does not exist: {output_s3_uri}", code)
    if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return OutputUnavailable(
            f"No permission to read {output_s3_uri} (the dashboard needs s3:GetObject on it)", "AccessDenied"
        )
    return OutputUnavailable(f"Cannot read {output_s3_uri}: {error_message(exc)}", code or "error")


# --- SQS: A2I's EventBridge events ------------------------------------------------

# ReceiveMessage's longest wait (SQS long polling), and its largest batch.
LONG_POLL_SECONDS = 20
RECEIVE_BATCH = 10


def receive_event_messages(queue_url: str, *, wait_seconds: int = LONG_POLL_SECONDS) -> list[dict]:
    """ReceiveMessage: wait up to `wait_seconds` for at most 10 messages; returns SQS's
    message dicts (MessageId, ReceiptHandle, Body). Each stays invisible to other
    consumers for the queue's visibility timeout, and comes back unless deleted.
    Raises ClientError (e.g. AWS.SimpleQueueService.NonExistentQueue) or A2IUnavailable.
    """
    client = sqs_client(region_of_queue_url(queue_url))
    response = _call(client.receive_message, QueueUrl=queue_url, MaxNumberOfMessages=RECEIVE_BATCH,
                     WaitTimeSeconds=wait_seconds)
    return response.get("Messages", [])


def delete_event_messages(queue_url: str, receipt_handles: list[str]) -> list[str]:
    """DeleteMessageBatch (at most 10 handles); returns the handles SQS did not delete
    (they come back after the visibility timeout). Raises ClientError or A2IUnavailable."""
    if not receipt_handles:
        return []
    client = sqs_client(region_of_queue_url(queue_url))
    entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(receipt_handles)]
    response = _call(client.delete_message_batch, QueueUrl=queue_url, Entries=entries)
    return [receipt_handles[int(failed["Id"])] for failed in response.get("Failed", [])]


def region_of_queue_url(queue_url: str) -> str:
    """The region of an SQS queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`, or
    the legacy `https://<region>.queue.amazonaws.com/...`); for any other host (a local SQS)
    the first of A2I_REGIONS."""
    host = (urlparse(queue_url).hostname or "").lower()
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and parts[2] == "amazonaws":
        return parts[1]
    if len(parts) >= 4 and parts[1] == "queue" and parts[2] == "amazonaws":
        return parts[0]
    return settings.A2I_REGIONS[0]


# --- ARNs ----------------------------------------------------------------------


def region_of_arn(arn: str) -> str:
    """The region of an ARN (`arn:aws:sagemaker:<region>:<account>:...`); ValueError if malformed."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn" or not parts[3]:
        raise ValueError(f"Not an ARN with a region: {arn!r}")
    return parts[3]


def human_loop_arn(flow_definition_arn: str, name: str) -> str:
    """A loop's ARN built from its flow definition's ARN (ListHumanLoops does not return it).

    Loop ARNs are `arn:<partition>:sagemaker:<region>:<account>:human-loop/<name>`, in the
    same partition, region and account as their flow definition.
    """
    prefix, _, _ = flow_definition_arn.rpartition(":flow-definition/")
    return f"{prefix}:human-loop/{name}"
