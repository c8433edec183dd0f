"""A2I Local: a wire-compatible local emulator of the Amazon A2I runtime API.

It also answers the four SageMaker flow-definition calls (JSON 1.1) on the same port,
so boto3, the AWS CLI and other SDKs talk to it unchanged through ``endpoint_url``.
This package imports nothing from Django.
"""

from .config import VERSION as __version__  # noqa: F401
