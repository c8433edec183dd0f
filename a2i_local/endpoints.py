"""The environment that points boto3 (and every other AWS SDK) at A2I Local."""

from __future__ import annotations


def boto3_environ(runtime_url: str, s3_url: str, region: str, *, credentials: str = "testing") -> dict[str, str]:
    """The standard boto3 variables that point every SDK at A2I Local and an S3 endpoint.

    The product reads no endpoint settings of its own: a process given these talks to
    A2I Local exactly as it would to AWS (tests, benchmarks and `make run` all use this).
    """
    return {
        "AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME": runtime_url,
        "AWS_ENDPOINT_URL_SAGEMAKER": runtime_url,
        "AWS_ENDPOINT_URL_S3": s3_url,
        "AWS_ACCESS_KEY_ID": credentials,
        "AWS_SECRET_ACCESS_KEY": credentials,
        "AWS_DEFAULT_REGION": region,
    }
