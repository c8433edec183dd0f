"""Who may open which page: the decorators every dashboard view uses (roles in loops.permissions).

A user who is not logged in goes to the login page; a logged-in user without the
role gets a 403 page that says what is missing and whom to ask, never someone
else's data.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from loops.permissions import AUDIT, VIEW_LOOPS
from loops.services import tokens


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


def token_or_viewer(accepts):
    """viewer_required, or an API token for the GET requests `accepts(request)` says a token may make.

    With an `Authorization: Bearer` header on such a request, the token's user is the
    request's user for this request only (no session is created); an unknown or revoked
    token is a 401, a user without the viewer role a 403, as plain text for scripts.
    Tokens read: only views that read use this decorator, and only for requests that read.
    """

    def decorator(view):
        session_view = viewer_required(view)

        @wraps(view)
        def wrapped(request, *args, **kwargs):
            header = request.headers.get("Authorization")
            if not header or request.method != "GET" or not accepts(request):
                return session_view(request, *args, **kwargs)
            token = tokens.authenticate(header)
            if token is None:
                return plain_response("Unknown or revoked API token.", 401, {"WWW-Authenticate": "Bearer"})
            if not token.user.has_perm(VIEW_LOOPS):
                return plain_response("This token's user has no viewer role.", 403)
            request.user, request.api_token = token.user, token
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def plain_response(message: str, status: int, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(f"{message}\n", status=status, content_type="text/plain; charset=utf-8")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


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
