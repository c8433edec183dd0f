"""Who may do what: the roles (groups), the permissions they carry, and the action permissions.

Read by the data migrations that create the groups, by the views and services that
check permissions, and by the tests that build users, so the three cannot disagree.

    viewer    read loops, flow definitions and syncs (the dashboard's pages)
    auditor   the same, plus the audit log and every action batch (who stopped or
              deleted what, and why)
    operator  the same as auditor, plus stop_humanloop and delete_humanloop (stop and
              delete loops *in A2I*), manage_alerts (alert rules and channels) and
              discover_flowdefinition (run a discovery now)

A logged-in user in no group sees a page asking them to ask an administrator.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions

# What the viewer role reads: the mirror of A2I and the sync's own records.
READ = [f"view_{model}" for model in ("flowdefinition", "humanloop", "humanloopstatuschange", "syncrun", "workerheartbeat")]
# What the auditor role reads on top: the audit trail.
AUDIT_READ = ["view_loopactionbatch", "view_loopaction", "audit_loopaction"]
STOP = "stop_humanloop"
DELETE = "delete_humanloop"
# Alert rules and notification channels: create, edit, mute, delete, send a test.
MANAGE_ALERTS_CODENAME = "manage_alerts"
DISCOVER = "discover_flowdefinition"

# Group name -> codenames of the loops app's permissions it holds (exactly those).
GROUPS: dict[str, list[str]] = {
    "viewer": READ,
    "auditor": READ + AUDIT_READ,
    "operator": READ + AUDIT_READ + [STOP, DELETE, MANAGE_ALERTS_CODENAME, DISCOVER],
}

# The permissions the views check, as "app_label.codename".
VIEW_LOOPS = "loops.view_humanloop"  # every dashboard page
AUDIT = "loops.audit_loopaction"  # the audit log, every action batch, the reasons given
MANAGE_ALERTS = f"loops.{MANAGE_ALERTS_CODENAME}"  # alert rules and channels
DISCOVER_NOW = f"loops.{DISCOVER}"  # the "discover flow definitions now" button

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
    """Create the groups of GROUPS, each with exactly its permissions; for data migrations.

    Permissions are normally created by a post_migrate signal, which runs after all
    migrations; a fresh database would not have them yet, so they are created here
    first with the same function the signal uses. A permission that the models do not
    define yet at this point of the migration history is left out: the migration that
    defines it runs this again (every migration that adds a role or a permission does).
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
        group.permissions.set(permissions)


def delete_groups(apps, schema_editor) -> None:
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=GROUPS).delete()
