"""output.json, written through boto3 S3 to the loop's OutputS3Uri.

The S3 endpoint is ``options.s3_endpoint`` (moto's S3 server locally; when None, boto3's
usual endpoint and credential chain apply). As a local convenience the bucket is created
when it does not exist yet; real A2I requires it to exist.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import urlparse

from .config import Options
from .errors import OutputWriteError

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


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
