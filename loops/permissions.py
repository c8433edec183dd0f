"""Who may do what: the permissions of the stop/delete actions and the groups that carry them.

Read by the data migration that creates the groups, by the services and views that
check permissions, and by the tests that build users, so the three cannot disagree.

    viewer    view permissions on every loops model
    operator  the same, plus stop_humanloop and delete_humanloop (stop and delete loops *in A2I*)
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions

LOOPS_MODELS = (
    "flowdefinition",
    "humanloop",
    "humanloopstatuschange",
    "syncrun",
    "workerheartbeat",
    "loopactionbatch",
    "loopaction",
)
VIEW = [f"view_{model}" for model in LOOPS_MODELS]
STOP = "stop_humanloop"
DELETE = "delete_humanloop"

# Group name -> codenames of the loops app's permissions it holds.
GROUPS: dict[str, list[str]] = {
    "viewer": VIEW,
    "operator": VIEW + [STOP, DELETE],
}

# Action (LoopActionBatch.Action value) -> the permissions it needs, as "app_label.codename".
ACTION_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "stop": (f"loops.{STOP}",),
    "delete": (f"loops.{DELETE}",),
    "stop_and_delete": (f"loops.{STOP}", f"loops.{DELETE}"),
}


def user_can_run(user, action: str) -> bool:
    """Whether `user` holds every permission `action` needs. Unknown actions: False."""
    permissions = ACTION_PERMISSIONS.get(action)
    return bool(permissions) and user.has_perms(permissions)


def create_groups(apps, schema_editor) -> None:
    """Create (or complete) the groups of GROUPS with their permissions; for data migrations.

    Permissions are normally created by a post_migrate signal, which runs after all
    migrations; a fresh database would not have them yet, so they are created here
    first with the same function the signal uses.
    """
    db = schema_editor.connection.alias
    app_config = apps.get_app_config("loops")
    # create_permissions skips apps without a models module; historical app configs have none.
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=db)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _created = Group.objects.using(db).get_or_create(name=name)
        permissions = Permission.objects.using(db).filter(content_type__app_label="loops", codename__in=codenames)
        missing = set(codenames) - set(permissions.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*permissions)


def delete_groups(apps, schema_editor) -> None:
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=GROUPS).delete()
