"""Timestamp parsing and formatting for both wire protocols.

Inside the store every time is an integer of milliseconds since the epoch (UTC).
The runtime API (rest-json) emits ``YYYY-MM-DDTHH:MM:SS.sssZ``; SageMaker JSON 1.1
emits epoch seconds as a JSON number.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from .errors import ValidationException

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def format_iso_ms(ms: int) -> str:
    """Milliseconds since the epoch -> ``2022-04-24T20:14:22.850Z`` (the wire value A2I sends)."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{ms % 1000:03d}Z"


def ms_to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_time(value, field: str) -> int:
    """Parse a timestamp a client may send; return epoch milliseconds.

    Accepts epoch numbers (int, float or their string form: botocore sends epoch floats
    to SageMaker), ISO-8601 with or without fractional seconds, ``Z`` or an offset, and a
    date alone (midnight UTC). Anything else raises ValidationException naming ``field``.
    """
    if isinstance(value, bool):
        raise _bad(value, field)
    if isinstance(value, (int, float)):
        return _epoch_ms(value, value, field)
    if not isinstance(value, str):
        raise _bad(value, field)
    text = value.strip()
    if _NUMBER.match(text):
        return _epoch_ms(float(text), value, field)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime_to_ms(datetime(d.year, d.month, d.day, tzinfo=UTC))
        # fromisoformat (3.11+) takes Z, offsets and 1-6 fractional digits, but not 7+
        # digits (some SDKs send 100 ns precision): trim the fraction to microseconds.
        m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
        if m:
            text = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
        if "T" not in text and " " not in text:
            raise ValueError(text)
        return datetime_to_ms(datetime.fromisoformat(text))
    except ValueError:
        raise _bad(value, field) from None


_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the largest ISO-8601 instant


def _epoch_ms(seconds: float, value, field: str) -> int:
    """Epoch seconds -> ms; out-of-range or non-finite values are a ValidationException, not a 500."""
    if not (-_MAX_MS <= seconds * 1000 <= _MAX_MS):  # also false for NaN
        raise _bad(value, field)
    return round(seconds * 1000)


def _bad(value, field: str) -> ValidationException:
    return ValidationException(
        f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
        "Member must be a timestamp (ISO-8601, e.g. 2020-02-24 or 2020-02-24T01:02:03.456Z, or epoch seconds)"
    )
