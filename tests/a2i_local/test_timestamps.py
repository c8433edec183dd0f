"""Timestamp parsing accepts every form clients send and rejects the rest with a named field."""

import pytest

from a2i_local.errors import ValidationException
from a2i_local.timestamps import format_iso_ms, parse_time

MS = 1582506123456  # 2020-02-24T01:02:03.456Z


@pytest.mark.parametrize("text", [
    "2020-02-24T01:02:03.456Z", "2020-02-24T01:02:03.456000Z", "2020-02-24T01:02:03.4560000Z",
    "2020-02-24T03:02:03.456+02:00", "2020-02-24T01:02:03.456+00:00", "1582506123.456", 1582506123.456,
])
def test_equivalent_forms_parse_to_the_same_millisecond(text):
    assert parse_time(text, "creationTimeAfter") == MS


@pytest.mark.parametrize(("text", "expected"), [
    ("2020-02-24", 1582502400000), ("2020-02-24T01:02:03Z", 1582506123000), ("1582506123", 1582506123000),
])
def test_whole_seconds_and_dates(text, expected):
    assert parse_time(text, "creationTimeAfter") == expected


@pytest.mark.parametrize("text", ["yesterday", "2020-13-01", "2020-02-24T25:00:00Z", "", "true", True, None,
                                  "99999999999999999999", float("nan"), float("inf"), 1e300])
def test_malformed_values_name_the_field(text):
    with pytest.raises(ValidationException) as excinfo:
        parse_time(text, "creationTimeBefore")
    assert "at 'creationTimeBefore'" in excinfo.value.message


def test_format_is_milliseconds_and_z():
    assert format_iso_ms(MS) == "2020-02-24T01:02:03.456Z"
    assert format_iso_ms(0) == "1970-01-01T00:00:00.000Z"
