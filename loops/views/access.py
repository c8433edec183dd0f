"""Who may open which page: the decorators every dashboard view uses (roles in loops.permissions).

A user who is not logged in goes to the login page; a logged-in user without the
role gets a 403 page that says what is missing and whom to ask, never someone
else's data.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from loops.permissions import AUDIT, VIEW_LOOPS


def requires(permission: str, role: str):
    """Login, then `permission`; otherwise the "ask an administrator" page (403)."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.has_perm(permission):
                return render(request, "loops/no_role.html", {"role": role}, status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


viewer_required = requires(VIEW_LOOPS, "viewer")
auditor_required = requires(AUDIT, "auditor")


def client_ip(request) -> str | None:
    """The client's address, for login throttling (django-axes' AXES_CLIENT_IP_CALLABLE).

    Without a proxy (TRUSTED_PROXIES=0) it is the peer's address. Behind N proxies that
    each append the address they received the request from to X-Forwarded-For, it is the
    N-th entry from the right: entries further left were written by the client and could
    be forged to dodge the lock-out.
    """
    proxies = settings.TRUSTED_PROXIES
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies][:64]
    return request.META.get("REMOTE_ADDR")


USERNAME_MAX_LENGTH = 150  # Django's User.username; django-axes stores at most 255


def login_username(request, credentials) -> str | None:
    """The username a login attempt is counted under (django-axes' AXES_USERNAME_CALLABLE).

    As typed, cut to 150 characters: Django's login form does not enforce its own
    maximum, and a longer value would fail to be stored by django-axes (a 500).
    """
    value = (credentials or {}).get("username")
    if value is None and request is not None:
        value = request.POST.get("username")
    return value[:USERNAME_MAX_LENGTH] if isinstance(value, str) else value
