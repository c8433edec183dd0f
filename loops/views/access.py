"""Who may open which page: the decorators every dashboard view uses (roles in loops.permissions).

A user who is not logged in goes to the login page; a logged-in user without the
role gets a 403 page that says what is missing and whom to ask, never someone
else's data.
"""

from __future__ import annotations

from functools import wraps

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
