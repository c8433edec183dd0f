"""Authentication backend: Django's ModelBackend with each user's permissions cached between requests."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend

from loops.services import permission_cache


class CachedPermissionsBackend(ModelBackend):
    """ModelBackend whose permission set comes from loops.services.permission_cache.

    Only the combined set (what has_perm and the templates' `perms` read) is cached;
    is_active and is_superuser are read from the user row loaded for each request, as before.
    """

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = permission_cache.user_permissions(
                user_obj.pk, lambda: super(CachedPermissionsBackend, self).get_all_permissions(user_obj)
            )
        return user_obj._perm_cache
