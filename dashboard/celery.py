"""The Celery app: settings come from Django settings under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import celeryd_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_init.connect
def lower_the_workers_cpu_priority(**kwargs):
    # Syncs, ingestions and actions are background work with budgets of seconds; pages are
    # people waiting. Where both share CPUs (make run, one compose host), the scheduler
    # serves pages first. Set in the worker's main process, before its pool forks.
    from django.conf import settings

    if settings.WORKER_NICENESS:
        os.nice(settings.WORKER_NICENESS)
