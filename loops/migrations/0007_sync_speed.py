# Fewer index and constraint updates per loop the sync inserts (docs/sync.md, "PostgreSQL
# cost of a synced loop"): the ARN's uniqueness as a plain unique index (unique=True also
# built a varchar_pattern_ops twin on PostgreSQL), no index of its own on
# HumanLoop.flow_definition_id (the partial per-flow-definition indexes serve those
# queries), and no database foreign-key constraint from a history row to its loop.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("loops", "0006_answers"),
    ]

    operations = [
        # The new unique index first, so the ARN is never without one.
        migrations.AddConstraint(
            model_name="humanloop",
            constraint=models.UniqueConstraint(fields=("arn",), name="loop_arn_unique"),
        ),
        migrations.AlterField(
            model_name="humanloop",
            name="arn",
            field=models.CharField(max_length=1024, verbose_name="ARN"),
        ),
        migrations.AlterField(
            model_name="humanloop",
            name="flow_definition",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="loops", to="loops.flowdefinition"
            ),
        ),
        migrations.AlterField(
            model_name="humanloopstatuschange",
            name="loop",
            field=models.ForeignKey(
                db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE,
                related_name="status_changes", to="loops.humanloop",
            ),
        ),
    ]
