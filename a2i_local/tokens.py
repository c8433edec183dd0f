"""Opaque NextToken values: a keyset cursor bound to the query's filters.

A token is ``base64url(json)`` of ``{"k": [creation_ms, id], "f": <filter digest>}``
followed by ``.`` and an HMAC of that payload. The key lives in the store's meta table,
so tokens survive a restart with ``--db``. Tampered, truncated or foreign tokens, and
tokens reused with different filters, raise ValidationException (AWS's code for a bad
NextToken). A cursor names the last row returned, never an offset, so rows started or
deleted meanwhile cannot shift the page boundary.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from .errors import ValidationException

MAX_TOKEN_LENGTH = 8192


class TokenCodec:
    def __init__(self, key: bytes):
        self._key = key

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()[:16]).decode().rstrip("=")

    @staticmethod
    def digest(filters: tuple) -> str:
        return hashlib.sha256(repr(filters).encode()).hexdigest()[:16]

    def encode(self, position: tuple[int, int], filters: tuple) -> str:
        payload = json.dumps({"k": list(position), "f": self.digest(filters)}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._mac(payload)

    def decode(self, token: str, filters: tuple, field: str = "nextToken") -> tuple[int, int]:
        """Return the ``(creation_ms, id)`` position; raise ValidationException when invalid."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValidationException(
                f"1 validation error detected: Value at '{field}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {MAX_TOKEN_LENGTH}"
            )
        try:
            body, mac = token.split(".", 1)
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if not hmac.compare_digest(mac, self._mac(payload)):
                raise ValueError("bad mac")
            data = json.loads(payload)
            creation_ms, row_id = data["k"]
            digest = data["f"]
            if not (isinstance(creation_ms, int) and isinstance(row_id, int)):
                raise ValueError("bad position")
        except (ValueError, KeyError, TypeError):
            raise ValidationException("Invalid pagination token: the NextToken is malformed or expired.") from None
        if digest != self.digest(filters):
            raise ValidationException(
                "Invalid pagination token: the NextToken was issued for a request with different parameters "
                "(FlowDefinitionArn, CreationTimeAfter, CreationTimeBefore or SortOrder changed)."
            )
        return creation_ms, row_id
