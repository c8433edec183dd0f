"""The audit permission and the auditor role; viewers no longer read the audit log.

Runs the same group definition as 0002 (loops.permissions), which sets each group's
permissions exactly.
"""

from django.db import migrations

from loops.permissions import create_groups


class Migration(migrations.Migration):
    dependencies = [("loops", "0003_leaner_indexes")]

    operations = [
        migrations.AlterModelOptions(
            name="loopaction",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("audit_loopaction", "Can read the audit log and every action batch")],
            },
        ),
        migrations.RunPython(create_groups, migrations.RunPython.noop),
    ]
