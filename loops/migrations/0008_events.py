"""Status history rows say where they come from (event, sync, action); A2I's events as received.

The new column has a database default, "sync": rows written before it (most of them by
the sync, none from an event) get it, the sync's raw-SQL inserts keep working without
naming it, and PostgreSQL adds a column with a constant default without rewriting the
table.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('loops', '0007_sync_speed'),
    ]

    operations = [
        migrations.AddField(
            model_name='humanloopstatuschange',
            name='source',
            field=models.CharField(choices=[('event', 'A2I event'), ('sync', 'Sync'), ('action', 'Action')], db_default='sync', default='sync', max_length=8),
        ),
        migrations.CreateModel(
            name='ReceivedEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event_id', models.CharField(max_length=64)),
                ('received_at', models.DateTimeField()),
                ('event_time', models.DateTimeField()),
                ('transport', models.CharField(choices=[('https', 'HTTPS endpoint'), ('sqs', 'SQS queue')], max_length=8)),
                ('status', models.CharField(choices=[('InProgress', 'In progress'), ('Completed', 'Completed'), ('Failed', 'Failed'), ('Stopping', 'Stopping'), ('Stopped', 'Stopped')], max_length=16)),
                ('result', models.CharField(choices=[('applied', 'Applied'), ('duplicate', 'Duplicate'), ('stale', 'Stale')], max_length=16)),
                ('loop', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='events', to='loops.humanloop')),
            ],
            options={
                'ordering': ['-received_at', '-id'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('result', 'duplicate'), _negated=True), fields=('event_id',), name='event_first_delivery')],
            },
        ),
    ]
