"""Server-side checks of the botocore model constraints that botocore leaves to the service.

Every check appends an AWS-style fragment to a ``Violations`` collector; ``raise_if_any``
raises one ValidationException whose message reads like SageMaker's:
``1 validation error detected: Value '101' at 'maxResults' failed to satisfy constraint:
Member must have value less than or equal to 100``. Field paths are lowerCamelCase as AWS
prints them (``humanLoopInput.inputContent``).
"""

from __future__ import annotations

import re

from . import errors

# Patterns exactly as the botocore service models print them (docs/a2i-local.md, behaviour
# notes §1.2 and §5); AWS matches the whole value, so they are applied with fullmatch and
# compiled once.
HUMAN_LOOP_NAME = "^[a-z0-9](-*[a-z0-9])*$"
FLOW_DEFINITION_ARN = r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:flow-definition/.*"
FLOW_DEFINITION_NAME = "[a-z0-9](-*[a-z0-9]){0,62}"
WORKTEAM_ARN = r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:workteam/.*"
HUMAN_TASK_UI_ARN = r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:[0-9]{12}:human-task-ui/.*"
ROLE_ARN = r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
S3_URI = r"(https|s3)://([^/]+)/?(.*)"
TASK_KEYWORD = r"[A-Za-z0-9]+( [A-Za-z0-9]+)*"
TASK_TITLE = r"[\t\n\r -\uD7FF\uE000-\uFFFD]*"
TASK_DESCRIPTION = ".+"
KMS_KEY_ID = r"[a-zA-Z0-9:/_-]*"
# The model's tag pattern uses Java's \p{L}\p{Z}\p{N}; Python's re has no \p classes, so
# the check uses the nearest equivalent and the message shows the model's pattern.
TAG_PATTERN_SHOWN = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"
TAG_PATTERN = r"([^\W_]|[\s_.:/=+\-@])*"

INT32_MAX = 2_147_483_647

_COMPILED: dict[str, re.Pattern] = {}

SORT_ORDERS = ("Ascending", "Descending")
CONTENT_CLASSIFIERS = ("FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent")
FAILURE_CODES = ("ValidationError", "Expired", "InternalError")
AWS_MANAGED_SOURCES = ("AWS/Rekognition/DetectModerationLabels/Image/V3", "AWS/Textract/AnalyzeDocument/Forms/V1")

# Long values are left out of the message, as AWS does for large members.
_MAX_SHOWN = 256


def _compiled(pattern: str) -> re.Pattern:
    rx = _COMPILED.get(pattern)
    if rx is None:
        rx = _COMPILED[pattern] = re.compile(pattern)
    return rx


class Violations:
    """Collects constraint violations for one request."""

    __slots__ = ("items", "error_class")

    def __init__(self, error_class: type[errors.AwsError] = errors.ValidationException):
        self.items: list[str] = []
        self.error_class = error_class

    def add(self, value, field: str, constraint: str) -> None:
        if value is None:
            self.items.append(f"Value null at '{field}' failed to satisfy constraint: {constraint}")
        elif isinstance(value, str) and len(value) > _MAX_SHOWN:
            self.items.append(f"Value at '{field}' failed to satisfy constraint: {constraint}")
        else:
            self.items.append(f"Value '{value}' at '{field}' failed to satisfy constraint: {constraint}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        n = len(self.items)
        noun = "error" if n == 1 else "errors"
        raise self.error_class(f"{n} validation {noun} detected: " + "; ".join(self.items))

    # -- checks; each returns True when the value passed ----------------------------------

    def required(self, value, field: str) -> bool:
        if value is None:
            self.add(None, field, "Member must not be null")
            return False
        return True

    def _length(self, value, field: str, min_len, max_len) -> bool:
        """AWS's length constraints, shared by strings and lists."""
        ok = True
        if min_len is not None and len(value) < min_len:
            self.add(value, field, f"Member must have length greater than or equal to {min_len}")
            ok = False
        if max_len is not None and len(value) > max_len:
            self.add(value, field, f"Member must have length less than or equal to {max_len}")
            ok = False
        return ok

    def string(self, value, field: str, *, min_len=None, max_len=None, pattern=None, shown_pattern=None,
               required=False) -> bool:
        if value is None:
            return self.required(value, field) if required else True
        if not isinstance(value, str):
            self.add(value, field, "Member must be a string")
            return False
        ok = self._length(value, field, min_len, max_len)
        # AWS matches the whole value (Java's String.matches), hence fullmatch.
        if pattern is not None and ok and not _compiled(pattern).fullmatch(value):
            self.add(value, field, f"Member must satisfy regular expression pattern: {shown_pattern or pattern}")
            ok = False
        return ok

    def integer(self, value, field: str, *, min_value=None, max_value=None, required=False) -> bool:
        if value is None:
            return self.required(value, field) if required else True
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(value, field, "Member must be an integer")
            return False
        # The models' integers are 32-bit (Java Integer): larger values never reach AWS's
        # validation, and must not reach SQLite's 64-bit arithmetic either.
        if max_value is None or max_value > INT32_MAX:
            max_value = INT32_MAX
        ok = True
        if min_value is not None and value < min_value:
            self.add(value, field, f"Member must have value greater than or equal to {min_value}")
            ok = False
        if max_value is not None and value > max_value:
            self.add(value, field, f"Member must have value less than or equal to {max_value}")
            ok = False
        return ok

    def enum(self, value, field: str, allowed: tuple[str, ...], *, required=False) -> bool:
        if value is None:
            return self.required(value, field) if required else True
        if value not in allowed:
            self.add(value, field, f"Member must satisfy enum value set: [{', '.join(allowed)}]")
            return False
        return True

    def listing(self, value, field: str, *, min_len=None, max_len=None, required=False) -> bool:
        if value is None:
            return self.required(value, field) if required else True
        if not isinstance(value, list):
            self.add(value, field, "Member must be a list")
            return False
        ok = self._length(value, field, min_len, max_len)
        return ok

    def structure(self, value, field: str, *, required=False) -> bool:
        if value is None:
            return self.required(value, field) if required else True
        if not isinstance(value, dict):
            self.add(value, field, "Member must be a structure")
            return False
        return True


def parse_int_param(value: str | None, field: str) -> int | None:
    """A query-string integer; a non-number is a ValidationException naming the field."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.ValidationException(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
            "Member must be an integer"
        ) from None
