"""Hardening: the "unknown" outcome of an action, batches prepared by the worker, and the
permission to run a discovery now (given to the operator group by create_groups, which
sets every group's permissions exactly, as 0002 and 0004 do).
"""

from django.db import migrations, models

from loops.permissions import create_groups


class Migration(migrations.Migration):

    dependencies = [
        ('loops', '0008_events'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='flowdefinition',
            options={'ordering': ['name', 'region'], 'permissions': [('discover_flowdefinition', 'Can run a flow-definition discovery now')]},
        ),
        migrations.AddField(
            model_name='loopactionbatch',
            name='selection',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name='loopaction',
            name='outcome',
            field=models.CharField(choices=[('pending', 'Pending'), ('succeeded', 'Succeeded'), ('skipped', 'Skipped'), ('failed', 'Failed'), ('unknown', 'Unknown')], default='pending', max_length=16),
        ),
        migrations.AlterField(
            model_name='loopactionbatch',
            name='state',
            field=models.CharField(choices=[('preparing', 'Preparing'), ('pending', 'Pending'), ('running', 'Running'), ('done', 'Done')], default='pending', max_length=16),
        ),
        migrations.AddIndex(
            model_name='loopaction',
            index=models.Index(condition=models.Q(('outcome', 'unknown')), fields=['loop'], name='action_unknown_loop'),
        ),
        migrations.RunPython(create_groups, migrations.RunPython.noop),
    ]
