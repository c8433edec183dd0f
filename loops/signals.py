"""Receivers that keep caches honest: a change of who may do what drops the cached permission sets."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_delete, post_migrate

from loops.services import permission_cache

# The join tables behind user.groups, user.user_permissions and group.permissions. Matched
# by table, not by model class: migrations send these signals with historical models.
PERMISSION_TABLES = {"auth_user_groups", "auth_user_user_permissions", "auth_group_permissions"}


def _membership_changed(sender, action, **kwargs):
    if action in ("post_add", "post_remove", "post_clear") and sender._meta.db_table in PERMISSION_TABLES:
        permission_cache.permissions_changed()


def _changed(sender, **kwargs):
    permission_cache.permissions_changed()


def connect() -> None:
    m2m_changed.connect(_membership_changed, dispatch_uid="loops-permission-cache-m2m")
    # A group's or a permission's join rows go by cascade, which sends no m2m_changed.
    post_delete.connect(_changed, sender=Group, dispatch_uid="loops-permission-cache-group")
    post_delete.connect(_changed, sender=Permission, dispatch_uid="loops-permission-cache-permission")
    post_migrate.connect(_changed, dispatch_uid="loops-permission-cache-migrate")
