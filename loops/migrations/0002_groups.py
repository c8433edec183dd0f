"""Data migration: the "viewer" and "operator" groups (definitions in loops.permissions)."""

from django.db import migrations

from loops.permissions import create_groups, delete_groups


class Migration(migrations.Migration):
    dependencies = [
        ("loops", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
