"""Each user's permission set, kept in the shared cache between requests.

Why: Django's ModelBackend reads a user's permissions with two queries (the user's own,
and their groups') on every request that checks one, and every dashboard page does. Under
concurrent users those two queries were about a third of a cached page's web CPU
(docs/performance.md, "Dashboard under load").

How it stays correct: an entry holds the *generation* it was computed under, a random
token in the cache that any change to who may do what replaces (`permissions_changed()`,
at once and again when the change's transaction has committed). A request reads the token and its user's
entry together (one round trip) and uses the entry only if the tokens match. The token
is read before the permissions: permissions read from before a change are therefore
always stored under the token from before it, and never used after it.

What changes permissions (loops.signals connects them): adding or removing a user's
groups or permissions or a group's permissions (m2m_changed), deleting a group or a
permission (their rows go by cascade, without m2m signals), and migrations. Writes that
bypass signals (raw SQL, `QuerySet.update` of those tables) must call
permissions_changed() themselves; entries expire after PERMISSION_CACHE_SECONDS anyway.

Like the page cache, it is off when the cache is a process's own memory (`make run`
without Redis: another process could not see a change) or PERMISSION_CACHE_SECONDS is 0.
A cache that does not answer costs a warning and the two queries, never a page.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from loops.services import page_cache

logger = logging.getLogger(__name__)


def enabled() -> bool:
    return settings.PERMISSION_CACHE_SECONDS > 0 and page_cache.cache_is_shared()


def _prefix() -> str:
    # Per database, as the page cache: deployments (or test runs) sharing a Redis differ.
    return f"permission-cache:{settings.DATABASES['default']['NAME']}"


def generation_key() -> str:
    return f"{_prefix()}:generation"


def user_key(user_id: int) -> str:
    return f"{_prefix()}:user:{user_id}"


def permissions_changed() -> None:
    """Announce a change of who may do what: every cached permission set is dropped now and
    again once the transaction commits.

    The second is what makes it safe (a request between the two may cache what it read
    before the commit, under the first new generation). The first serves the rest of the
    changing transaction itself, whose later requests (a test's, say) must see the change.
    """
    if enabled():
        _new_generation()
        transaction.on_commit(_new_generation)


def _new_generation() -> None:
    try:
        cache.set(generation_key(), uuid.uuid4().hex, timeout=None)
    except Exception as exc:
        # The entries still expire; until then a revoked permission could be honoured, so
        # this is an error, not a warning.
        logger.error("permission cache: could not start a new generation: %s", exc)


def user_permissions(user_id: int, compute: Callable[[], set[str]]) -> set[str]:
    """`compute()` (the user's permissions from the database), or the set cached under the current generation."""
    if not enabled():
        return compute()
    gen_key, key = generation_key(), user_key(user_id)
    try:
        found = cache.get_many([gen_key, key])
        generation = found.get(gen_key)
        if generation is None:  # never set, or evicted: start one (of two processes, one wins)
            cache.add(gen_key, uuid.uuid4().hex, timeout=None)
            generation = cache.get(gen_key)
    except Exception as exc:
        logger.warning("permission cache: not answering, reading permissions from the database: %s", exc)
        return compute()
    entry = found.get(key)
    if generation is not None and entry is not None and entry[0] == generation:
        return set(entry[1])
    permissions = compute()
    if generation is not None:
        try:
            cache.set(key, (generation, sorted(permissions)), timeout=settings.PERMISSION_CACHE_SECONDS)
        except Exception as exc:
            logger.warning("permission cache: could not store user %s's permissions: %s", user_id, exc)
    return permissions
