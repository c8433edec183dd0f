"""Rendered fragments of the busiest pages (overview, loop list), shared by every web process.

Why: under concurrent users the web processes spend most of their CPU building the same
overview and the same first pages of the loop list again and again (docs/performance.md,
"Dashboard under load"); the data behind them changes only when a sync, an event, an
action or an ingestion writes.

A fragment's cache key holds:

- the *data version*, a counter in the cache that every writer of what these pages show
  (loops, flow definitions and their statistics, answers, sync outcomes, alert states)
  bumps once its transaction has committed: `data_changed()`. A page requested after a
  write is never served from before it, except a sync's writes, which a sync run
  announces at most once a second and at its end (`one_announcement`). Bumping after the
  commit (never before) is what makes this safe: a render that read the old data was
  stored under the old version.
- a time slot of PAGE_CACHE_SECONDS, so the relative times ("3 min ago"), the worker
  heartbeat and anything a writer forgot to announce are at most that old.

The counter must be seen by every process, so the page cache is off when the cache is
a process's own memory (LocMemCache: `make run` without Redis) or PAGE_CACHE_SECONDS is
0. A cache that does not answer (Redis down) costs a warning and a render, never a page.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

T = TypeVar("T")


def cache_is_shared() -> bool:
    """Whether every web and worker process sees the same cache (Redis), not its own memory."""
    return not settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")


def enabled() -> bool:
    return settings.PAGE_CACHE_SECONDS > 0 and cache_is_shared()


def _prefix() -> str:
    # Per database: two deployments (or test runs) sharing one Redis must not share pages.
    return f"page-cache:{settings.DATABASES['default']['NAME']}"


def version_key() -> str:
    return f"{_prefix()}:data-version"


# Inside one_announcement(): [whether a change was noted]; None outside.
_deferred: ContextVar[list[bool] | None] = ContextVar("page_cache_deferred", default=None)


def data_changed(*, at_once: bool = False) -> None:
    """Announce a write of what cached pages show; runs when the current transaction commits.

    Inside one_announcement() the change is only noted and announced when the block ends,
    unless `at_once` (which also covers the changes noted before it).
    """
    if not enabled():
        return
    deferred = _deferred.get()
    if deferred is not None:
        if not at_once:
            deferred[0] = True
            return
        deferred[0] = False
    transaction.on_commit(_bump)


@contextmanager
def one_announcement() -> Iterator[None]:
    """The changes announced inside the block are announced once, when it ends.

    Why: every announcement drops every user's cached pages, and one sync of a flow
    definition announced up to three times within a second (its last pages, the failed
    loops it described, its statistics), each time for the pages rendered in between.
    Nested blocks announce with the outermost.
    """
    if _deferred.get() is not None:
        yield
        return
    token = _deferred.set([False])
    try:
        yield
    finally:
        noted = _deferred.get()[0]
        _deferred.reset(token)
        if noted:
            data_changed()


def _bump() -> None:
    key = version_key()
    try:
        try:
            cache.incr(key)
        except ValueError:  # no counter yet (first write, or the cache was flushed)
            _start_counter(key)
            cache.incr(key)
    except Exception as exc:  # the write happened; a cache outage must not fail it
        logger.warning("page cache: could not bump the data version: %s", exc)


def _start_counter(key: str) -> None:
    # From the clock, not from 1: after a flush, a number reused from before could
    # match fragments still stored under it. add(): of two processes, one starts it.
    cache.add(key, time.time_ns(), timeout=None)


def data_version() -> int:
    key = version_key()
    version = cache.get(key)
    if version is None:
        _start_counter(key)
        version = cache.get(key)
    return int(version)


def fragment(name: str, parts: list[str], render: Callable[[], T]) -> T:
    """`render()`'s value, from the cache when the same fragment was built from the same data version.

    `parts` are everything besides the data that the value depends on (the query string,
    the user's permissions on the page): each distinct list is its own entry.
    """
    if not enabled():
        return render()
    seconds = settings.PAGE_CACHE_SECONDS
    try:
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
        key = f"{_prefix()}:{name}:{data_version()}:{int(time.time() // seconds)}:{digest}"
        value = cache.get(key)
    except Exception as exc:
        logger.warning("page cache: not answering, rendering %s without it: %s", name, exc)
        return render()
    if value is None:
        value = render()
        try:
            # The key names its slot, so the entry is never read after the slot ends.
            cache.set(key, value, timeout=seconds)
        except Exception as exc:
            logger.warning("page cache: could not store %s: %s", name, exc)
    return value
