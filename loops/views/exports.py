"""What the pages that export (loop list, reviewers, audit log) answer alike."""

from __future__ import annotations

from django.http import HttpResponse

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
# An unknown format is echoed back this far at most: the value may be 64 KB of hostile text.
ECHO_CHARS = 40


def unknown_format(value: str, formats) -> HttpResponse:
    shown = value if len(value) <= ECHO_CHARS else f"{value[:ECHO_CHARS]}…"
    return bad_export(f"_export must be {' or '.join(formats)}, not {shown!r}.")


def bad_export(message: str) -> HttpResponse:
    return HttpResponse(f"Export refused: {message}\n", status=400, content_type="text/plain; charset=utf-8")


def errors_text(errors) -> str:
    return "; ".join(f"{'filters' if field == '__all__' else field}: {' '.join(messages)}" for field, messages in errors.items())


def query_without(request, keys) -> str:
    query = request.GET.copy()
    for key in keys:
        query.pop(key, None)
    return query.urlencode()
