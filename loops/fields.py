"""Form fields that accept only what Python and the database can hold, shared by the forms,
the filters and the admin.

A value that parses but cannot be represented (a date whose UTC time falls before year 1
or after 9999, an id beyond a 64-bit integer) is a form error here, instead of an
OverflowError or a database error while the page renders or an export streams.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django import forms

# Primary keys are 64-bit (BigAutoField); PostgreSQL's bigint and SQLite's integer hold
# at most this.
MAX_ID = 2**63 - 1

OUT_OF_RANGE = "This date and time is out of range: in UTC it must fall between years 1 and 9999."


def check_utc_representable(value: datetime | date) -> None:
    """ValidationError unless `value`, converted to UTC, is a datetime Python can hold.

    PostgreSQL would store it (timestamptz reaches 4713 BC), but every Python datetime
    made from it would overflow, and SQLite converts to UTC before storing.
    """
    if isinstance(value, datetime) and value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError(OUT_OF_RANGE, code="out_of_range") from None


class UTCDateTimeField(forms.DateTimeField):
    """ISO-8601 date and time, with or without an offset (none means UTC), representable in UTC."""

    def to_python(self, value):
        try:
            result = super().to_python(value)
        except OverflowError:  # e.g. a naive 9999-12-31T23:59:59 made aware in a zone east of UTC
            raise forms.ValidationError(OUT_OF_RANGE, code="out_of_range") from None
        if result is not None:
            check_utc_representable(result)
        return result


class IdField(forms.IntegerField):
    """A primary key: an integer from 1 to MAX_ID."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


def parse_id(value) -> int | None:
    """`value` as a primary key (1 to MAX_ID), or None when it is not one."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= MAX_ID else None


TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
FALSE_VALUES = frozenset({"0", "false", "no", "off", ""})


class StrictBooleanField(forms.Field):
    """The usual spellings of a boolean (1/0, true/false, yes/no, on/off, any case); absent
    or empty is False; anything else is a form error (not a silent True, as a checkbox
    widget would make of "0" or "no")."""

    widget = forms.TextInput
    default_error_messages = {"invalid": "Use 1/0, true/false, yes/no or on/off, not %(value)s."}

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value):
        if isinstance(value, bool):
            return value
        text = ("" if value is None else str(value)).strip().lower()
        if text in TRUE_VALUES:
            return True
        if text in FALSE_VALUES:
            return False
        raise forms.ValidationError(self.error_messages["invalid"], code="invalid", params={"value": repr(str(value)[:20])})

    def prepare_value(self, value):
        # What a template's `{% if form.deleted.value %}` sees: the parsed value, so "0"
        # renders an unticked box.
        try:
            return self.to_python(value)
        except forms.ValidationError:
            return False
