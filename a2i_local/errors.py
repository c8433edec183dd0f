"""One class per AWS error code, with the HTTP status AWS sends for it.

Runtime (rest-json) errors carry their own status; SageMaker JSON 1.1 errors are all 400.
The server writes ``x-amzn-ErrorType: <code>`` and ``{"Message": message}`` (plus
``__type`` for JSON 1.1), which is what botocore and the JS SDK read.
"""

from __future__ import annotations


class AwsError(Exception):
    code: str = "InternalServerException"
    status: int = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationException(AwsError):
    code = "ValidationException"
    status = 400


class ResourceNotFoundException(AwsError):
    code = "ResourceNotFoundException"
    status = 404


class ConflictException(AwsError):
    code = "ConflictException"
    status = 409


class ServiceQuotaExceededException(AwsError):
    code = "ServiceQuotaExceededException"
    status = 402


class ThrottlingException(AwsError):
    code = "ThrottlingException"
    status = 429


class InternalServerException(AwsError):
    code = "InternalServerException"
    status = 500


class UnknownOperationException(AwsError):
    """An X-Amz-Target or route this emulator does not implement."""

    code = "UnknownOperationException"
    status = 400


class NotFoundRoute(AwsError):
    """No operation matches the method and path (AWS answers 404 UnknownOperationException-like)."""

    code = "UnknownOperationException"
    status = 404


# SageMaker (JSON 1.1): none of these shapes sets an httpStatusCode, so 400 is the default.
class ResourceNotFound(AwsError):
    code = "ResourceNotFound"
    status = 400


class ResourceInUse(AwsError):
    code = "ResourceInUse"
    status = 400


class ResourceLimitExceeded(AwsError):
    code = "ResourceLimitExceeded"
    status = 400


class SageMakerValidationException(AwsError):
    """SageMaker's unmodelled ValidationException (real service sends it with 400)."""

    code = "ValidationException"
    status = 400


class SerializationException(AwsError):
    """A request body that is not JSON, or a member of the wrong JSON type (AWS: 400)."""

    code = "SerializationException"
    status = 400


class InvalidLoopState(ValidationException):
    """A control-API transition (complete/fail) asked of a loop that is not InProgress.

    A subclass of ValidationException so callers that ignore the ValidationException
    races (the workforce: a loop stopped meanwhile) ignore this one too; the control API
    answers it with 409.
    """

    code = "InvalidLoopState"
    status = 409


class OutputWriteError(AwsError):
    """output.json could not be written to S3; the loop stays InProgress (control API: 502)."""

    code = "OutputWriteFailed"
    status = 502
