"""The "API tokens" page: a user's own read-only tokens, created (shown once) and revoked."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from loops.forms import ApiTokenForm
from loops.services import tokens
from loops.views.access import viewer_required


@viewer_required
def token_list(request):
    form = ApiTokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        row, created = tokens.create_token(request.user, form.cleaned_data["name"])
        form = ApiTokenForm()
    # The new token is shown in this response only: it is not stored and no redirect carries it.
    context = {"form": form, "tokens": request.user.api_tokens.all(), "created": created}
    response = render(request, "loops/tokens.html", context)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@viewer_required
def token_revoke(request, pk: int):
    if tokens.revoke(request.user, pk):
        messages.success(request, "Token revoked: it no longer works.")
    else:
        messages.error(request, "No such active token of yours.")
    return redirect("loops:tokens")
