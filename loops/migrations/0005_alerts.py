"""Alerts: rules, states, transitions, channels, deliveries, the metrics' rollups, API tokens,
the flow definitions' badge keys, and the manage_alerts permission (given to the operator
group by the same group definition as 0002 and 0004, loops.permissions).
"""


import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from loops.permissions import create_groups


class Migration(migrations.Migration):

    dependencies = [
        ('loops', '0004_roles'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='MetricRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('source', models.CharField(max_length=32, unique=True)),
                ('upto_id', models.BigIntegerField(default=0)),
                ('counts', models.JSONField(default=dict)),
                ('updated_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.AddField(
            model_name='flowdefinition',
            name='badge_key',
            field=models.CharField(blank=True, db_index=True, max_length=32),
        ),
        migrations.CreateModel(
            name='AlertChannel',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('kind', models.CharField(choices=[('email', 'E-mail'), ('webhook', 'Webhook (JSON POST)'), ('slack', 'Slack-compatible webhook')], max_length=16)),
                ('target', models.CharField(max_length=2000)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('consecutive_failures', models.PositiveIntegerField(default=0)),
                ('last_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.TextField(blank=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['name', 'id'],
            },
        ),
        migrations.CreateModel(
            name='AlertRule',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('kind', models.CharField(choices=[('expiring', 'Loops close to expiry'), ('stuck_stopping', 'Loops stuck in Stopping'), ('failure_rate', 'Failure rate'), ('backlog', 'Backlog (InProgress count)'), ('review_time', 'Review time p90'), ('sync_stale', 'Sync stale or worker down')], max_length=16)),
                ('enabled', models.BooleanField(default=True)),
                ('share', models.FloatField(blank=True, help_text='expiring: share of the task availability lifetime (0.8 = 80 %); failure_rate: threshold (0.1 = 10 %).', null=True)),
                ('count', models.PositiveIntegerField(blank=True, help_text='expiring: fire from this many loops; backlog: fire above this many InProgress loops; failure_rate: minimum number of ended loops in the window.', null=True)),
                ('minutes', models.PositiveIntegerField(blank=True, help_text='stuck_stopping: minutes in Stopping; review_time: p90 above this many minutes; sync_stale: minutes without a successful sync.', null=True)),
                ('window_minutes', models.PositiveIntegerField(blank=True, help_text='failure_rate: the window, in minutes.', null=True)),
                ('failure_code', models.CharField(blank=True, help_text='failure_rate: count only this failure code.', max_length=32)),
                ('reminder_hours', models.PositiveIntegerField(blank=True, null=True)),
                ('muted_until', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_evaluated_at', models.DateTimeField(blank=True, null=True)),
                ('evaluation_claimed_until', models.DateTimeField(blank=True, null=True)),
                ('channels', models.ManyToManyField(blank=True, related_name='rules', to='loops.alertchannel')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('flow_definition', models.ForeignKey(blank=True, help_text='Empty: every flow definition, each with its own state.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='alert_rules', to='loops.flowdefinition')),
            ],
            options={
                'ordering': ['name', 'id'],
                'permissions': [('manage_alerts', 'Can manage alert rules and notification channels')],
            },
        ),
        migrations.CreateModel(
            name='AlertState',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('ok', 'OK'), ('firing', 'Firing')], default='ok', max_length=8)),
                ('episode', models.PositiveIntegerField(default=0)),
                ('changed_at', models.DateTimeField(blank=True, null=True)),
                ('clear_since', models.DateTimeField(blank=True, null=True)),
                ('last_notified_at', models.DateTimeField(blank=True, null=True)),
                ('value', models.FloatField(blank=True, null=True)),
                ('summary', models.TextField(blank=True)),
                ('loops', models.JSONField(blank=True, default=list)),
                ('link', models.CharField(blank=True, max_length=2000)),
                ('evaluated_at', models.DateTimeField(blank=True, null=True)),
                ('flow_definition', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='loops.flowdefinition')),
                ('rule', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='states', to='loops.alertrule')),
            ],
            options={
                'ordering': ['rule', 'flow_definition'],
            },
        ),
        migrations.CreateModel(
            name='AlertTransition',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('firing', 'Firing'), ('resolved', 'Resolved'), ('reminder', 'Still firing')], max_length=8)),
                ('episode', models.PositiveIntegerField()),
                ('created_at', models.DateTimeField()),
                ('value', models.FloatField(blank=True, null=True)),
                ('summary', models.TextField(blank=True)),
                ('loops', models.JSONField(blank=True, default=list)),
                ('link', models.CharField(blank=True, max_length=2000)),
                ('muted', models.BooleanField(default=False)),
                ('flow_definition', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='loops.flowdefinition')),
                ('rule', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='transitions', to='loops.alertrule')),
                ('state', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='transitions', to='loops.alertstate')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='AlertDelivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('is_test', models.BooleanField(default=False)),
                ('created_at', models.DateTimeField()),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending'), ('retrying', 'Retrying'), ('sent', 'Sent'), ('failed', 'Failed')], default='pending', max_length=8)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('last_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('claimed_until', models.DateTimeField(blank=True, null=True)),
                ('http_status', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('error', models.TextField(blank=True)),
                ('channel', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='loops.alertchannel')),
                ('transition', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='loops.alerttransition')),
            ],
            options={
                'verbose_name_plural': 'alert deliveries',
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('prefix', models.CharField(max_length=12)),
                ('digest', models.CharField(max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.AddIndex(
            model_name='alertstate',
            index=models.Index(condition=models.Q(('status', 'firing')), fields=['status'], name='alertstate_firing'),
        ),
        migrations.AddConstraint(
            model_name='alertstate',
            constraint=models.UniqueConstraint(condition=models.Q(('flow_definition__isnull', False)), fields=('rule', 'flow_definition'), name='alertstate_rule_fd'),
        ),
        migrations.AddConstraint(
            model_name='alertstate',
            constraint=models.UniqueConstraint(condition=models.Q(('flow_definition__isnull', True)), fields=('rule',), name='alertstate_rule_global'),
        ),
        migrations.AddIndex(
            model_name='alerttransition',
            index=models.Index(fields=['-created_at'], name='alerttransition_created'),
        ),
        migrations.AddConstraint(
            model_name='alerttransition',
            constraint=models.UniqueConstraint(condition=models.Q(('kind__in', ['firing', 'resolved'])), fields=('state', 'episode', 'kind'), name='alerttransition_once'),
        ),
        migrations.AddIndex(
            model_name='alertdelivery',
            index=models.Index(fields=['-created_at'], name='alertdelivery_created'),
        ),
        migrations.AddIndex(
            model_name='alertdelivery',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'retrying', 'sending'])), fields=['next_attempt_at'], name='alertdelivery_due'),
        ),
        migrations.AddConstraint(
            model_name='alertdelivery',
            constraint=models.UniqueConstraint(condition=models.Q(('transition__isnull', False)), fields=('transition', 'channel'), name='alertdelivery_once'),
        ),
        migrations.RunPython(create_groups, migrations.RunPython.noop),
    ]
