"""Data migration: the "viewer" and "operator" groups (issue 5).

viewer:   view permissions on every loops model.
operator: the same, plus loops.stop_humanloop and loops.delete_humanloop
          (stop and delete loops *in A2I*).

Permissions are normally created by a post_migrate signal, which runs after all
migrations; a fresh database would not have them yet, so they are created here
first with the same function the signal uses.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

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
OPERATE = ["stop_humanloop", "delete_humanloop"]
GROUPS = {"viewer": VIEW, "operator": VIEW + OPERATE}


def create_groups(apps, schema_editor):
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


def delete_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loops", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
