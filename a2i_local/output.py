"""output.json, written through boto3 S3 to the loop's OutputS3Uri.

The S3 endpoint is ``options.s3_endpoint`` (moto's S3 server locally; when None, boto3's
usual endpoint and credential chain apply). As a local convenience the bucket is created
when it does not exist yet; real A2I requires it to exist.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from urllib.parse import urlparse

from .config import Options
from .errors import OutputWriteError
from .timestamps import format_iso_ms

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def output_uri(output_path: str, flow_definition_name: str, loop_name: str, creation_ms: int) -> str:
    """``<S3OutputPath>/<flow-definition-name>/YYYY/MM/DD/hh/mm/ss/<loop-name>/output.json`` (UTC)."""
    stamp = format_iso_ms(creation_ms)  # 2022-04-24T20:14:22.850Z
    parts = f"{stamp[0:4]}/{stamp[5:7]}/{stamp[8:10]}/{stamp[11:13]}/{stamp[14:16]}/{stamp[17:19]}"
    return f"{output_path}/{flow_definition_name}/{parts}/{loop_name}/output.json"


@dataclass(frozen=True)
class WorkerAnswer:
    """One worker's answer; times not given are derived at completion (see answer_document)."""

    answer_content: dict
    worker_id: str | None = None
    time_spent_seconds: float | None = None
    acceptance_ms: int | None = None
    submission_ms: int | None = None


def answer_document(loop: dict, *, input_content: str, answers: list[WorkerAnswer], now_ms: int, region: str) -> dict:
    """output.json of a loop completed by ``answers`` (one entry per worker, in order).

    The document is that of a custom task type (docs/a2i-local.md, behaviour notes §3).
    ``loop`` has DescribeHumanLoop's keys, as the store builds them. A missing submission
    time is the completion (``now_ms``); a missing acceptance time is the submission minus
    the time spent, never before the loop's creation; a missing worker id is
    ``a2i-local-worker`` (``-2``, ``-3`` for the next ones).
    """
    creation_ms = loop["CreationTimeMs"]
    entries = []
    for position, answer in enumerate(answers):
        spent = 0.0 if answer.time_spent_seconds is None else float(answer.time_spent_seconds)
        submitted = now_ms if answer.submission_ms is None else answer.submission_ms
        accepted = max(creation_ms, submitted - int(spent * 1000)) if answer.acceptance_ms is None else answer.acceptance_ms
        worker_id = answer.worker_id or ("a2i-local-worker" if position == 0 else f"a2i-local-worker-{position + 1}")
        entries.append({
            "answerContent": answer.answer_content,
            "acceptanceTime": format_iso_ms(accepted),
            "submissionTime": format_iso_ms(submitted),
            "timeSpentInSeconds": spent,
            "workerId": worker_id,
            "workerMetadata": {"identityData": {
                "identityProviderType": "Cognito",
                "issuer": f"https://cognito-idp.{region}.amazonaws.com/{region}_a2ilocal",
                "sub": worker_id}},
        })
    return {
        "flowDefinitionArn": loop["FlowDefinitionArn"],
        "humanAnswers": entries,
        "humanLoopName": loop["HumanLoopName"],
        "inputContent": json.loads(input_content),
    }


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` (or ``https://bucket.s3...amazonaws.com/key``) -> (bucket, key)."""
    parsed = urlparse(uri)
    host = parsed.netloc
    if parsed.scheme == "https" and ".s3" in host:
        host = host.split(".s3", 1)[0]
    return host, parsed.path.lstrip("/")


def s3_client(options: Options):
    """A cached boto3 S3 client for the configured endpoint (creating one loads the service model: slow)."""
    key = (options.s3_endpoint, options.region)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            kwargs = {}
            if options.s3_endpoint:
                # The local S3 accepts any credentials; don't make users configure some.
                kwargs = {"endpoint_url": options.s3_endpoint, "aws_access_key_id": "a2i-local",
                          "aws_secret_access_key": "a2i-local"}
            client = boto3.client(
                "s3", region_name=options.region,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                              connect_timeout=5, read_timeout=15),
                **kwargs,
            )
            _clients[key] = client
    return client


def write_output(options: Options, uri: str, document: dict) -> None:
    """PUT ``document`` as JSON at ``uri``, creating the bucket if it is missing.

    Raises OutputWriteError (with the S3 error text) on any failure, so the caller can
    leave the loop InProgress and report 502.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    body = json.dumps(document, separators=(",", ":")).encode()
    client = s3_client(options)
    try:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise
            _create_bucket(client, bucket, options.region)
            client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    except (BotoCoreError, ClientError) as exc:
        raise OutputWriteError(f"Could not write output.json to {uri}: {exc}") from exc


def _create_bucket(client, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        client.create_bucket(Bucket=bucket, **kwargs)
    except ClientError as exc:
        # Another thread created it first.
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
