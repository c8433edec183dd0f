"""API tokens: create (shown once), authenticate a `Authorization: Bearer` header, revoke.

A token reads: the views accept it only on GET /metrics and the loop list's export
(loops.views.access.token_or_viewer); every other view, stop and delete included, ignores
it. Only a SHA-256 digest is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from loops.models import ApiToken

PREFIX = "a2i_"
# last_used_at is written at most this often per token (a scraper every 15 s would otherwise
# write on every request).
USE_RESOLUTION = timedelta(minutes=1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the token itself, which is not stored and
    cannot be shown again. Side effect: one INSERT."""
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(user=user, name=name, prefix=token[: len(PREFIX) + 6], digest=digest(token))
    return row, token


def authenticate(authorization: str | None) -> ApiToken | None:
    """The active token of an `Authorization: Bearer <token>` header value, with its user;
    None when absent, malformed, unknown, revoked, or its user is inactive.
    Side effect: last_used_at (at most once a minute)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(PREFIX):
        return None
    row = ApiToken.objects.select_related("user").filter(digest=digest(token), revoked_at__isnull=True).first()
    if row is None or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > USE_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row


def revoke(user, token_id: int) -> bool:
    """Revoke one of `user`'s tokens; False when it is not theirs or already revoked."""
    return bool(ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now()))
