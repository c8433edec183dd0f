"""One request as a handler sees it: the loop name from the path, the query string, the body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

from . import errors


@dataclass(frozen=True, slots=True)
class Request:
    name: str | None  # the route's {name} segment, percent-decoded; None when the route has none
    query: str  # the raw query string, without "?"
    body: bytes

    def query_params(self) -> dict[str, str]:
        """The query string as a dict (the last value of a repeated parameter wins)."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def json(self) -> dict:
        """The body as a JSON object ({} when empty); SerializationException otherwise."""
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise errors.SerializationException("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise errors.SerializationException("The request body must be a JSON object.")
        return data
