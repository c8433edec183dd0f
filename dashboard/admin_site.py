"""The admin site: Django's, with its input checked for every ModelAdmin on it (ours, auth's,
django-axes').

Django's admin passes query values to the database as they come, and a few of them fail
there or in Python instead of being answered as a bad filter (found by
tests/fuzz/test_every_url.py):

- the date hierarchy builds datetimes from `<field>__year/month/day`: year 9999 or a huge
  year overflows;
- list filters pass dates out of range in UTC, ids beyond 64 bits and NUL characters
  (which PostgreSQL refuses in text) straight to the query;
- `_selected_action` values go into `pk__in` unchecked;
- `?_to_field=` with an empty value passes the "may this field be referenced" check (it
  tests the value's truth) and then fails looking up a field named "".

Each becomes what the admin answers for any other bad input: the list with "?e=1", a
message, or a 400.
"""

from functools import wraps

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig
from django.contrib.admin.exceptions import DisallowedModelAdminToField
from django.contrib.admin.options import TO_FIELD_VAR, IncorrectLookupParameters
from django.contrib.admin.utils import NotRelationField, get_fields_from_path
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.http import HttpResponseRedirect

from loops.fields import MAX_ID, UTCDateTimeField, parse_id


class BoundedChangeList(ChangeList):
    """Django's ChangeList, with query values checked against what Python and the database hold."""

    def get_filters(self, request):
        self._check_values(request)
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:  # the date hierarchy's datetime arithmetic
            raise IncorrectLookupParameters(exc) from exc

    def _check_values(self, request) -> None:
        for key, values in request.GET.lists():
            field = self._field_of(key)
            for value in values:
                if "\x00" in value:
                    raise IncorrectLookupParameters(f"{key}: NUL characters are not allowed")
                if isinstance(field, models.DateTimeField) and value:
                    try:
                        UTCDateTimeField().to_python(value)
                    except forms.ValidationError as exc:
                        if exc.code == "out_of_range":
                            raise IncorrectLookupParameters(exc.messages[0]) from exc
                elif isinstance(field, (models.AutoField, models.ForeignKey, models.IntegerField)):
                    digits = value.strip().lstrip("-")
                    if digits.isdigit() and int(digits) > MAX_ID:
                        raise IncorrectLookupParameters(f"{key}: {value[:30]} is out of range")

    def _field_of(self, key: str):
        parts = key.split("__")
        for end in (len(parts), len(parts) - 1):
            if end < 1:
                continue
            try:
                return get_fields_from_path(self.model, "__".join(parts[:end]))[-1]
            except (FieldDoesNotExist, NotRelationField, AttributeError, IndexError):
                continue
        return None


class BoundedInputMixin:
    """Mixed into every ModelAdmin registered on the site (AdminSite.register)."""

    def get_changelist(self, request, **kwargs):
        return BoundedChangeList

    def response_action(self, request, queryset):
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if any(parse_id(value) is None for value in selected):
            self.message_user(request, f"Invalid selection: items are chosen by their ids (1 to {MAX_ID}).", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)


class AdminSite(admin.AdminSite):
    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        bounded = type(admin_class.__name__, (BoundedInputMixin, admin_class), {"__module__": admin_class.__module__})
        super().register(model_or_iterable, bounded, **options)

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def checked(request, *args, **kwargs):
            if request.GET.get(TO_FIELD_VAR) == "" or request.POST.get(TO_FIELD_VAR) == "":
                raise DisallowedModelAdminToField("The field '' cannot be referenced.")
            return inner(request, *args, **kwargs)

        return checked


class AdminConfig(DjangoAdminConfig):
    default_site = "dashboard.admin_site.AdminSite"
