"""Create (or reset) the local demo administrator that `make run` prints.

Idempotent: run it any number of times; the user ends with the fixed demo password,
staff and superuser rights, and membership of the "operator" group when that group
exists (the actions' data migration creates it). Refuses to run with DEBUG off, so
a production deployment can never get a user with a published password.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

DEMO_USERNAME = "admin"
# Published on purpose: this account exists only on a developer's machine.
DEMO_PASSWORD = "a2i-local-demo"


class Command(BaseCommand):
    help = "Create or reset the local-only demo admin user (admin / a2i-local-demo). Requires DEBUG."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("refusing to create a demo user with a published password while DEBUG is off")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=DEMO_USERNAME)
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        operator = Group.objects.filter(name="operator").first()
        if operator is not None:
            user.groups.add(operator)
        verb = "created" if created else "reset"
        self.stdout.write(
            f"Demo admin {verb}: login {DEMO_USERNAME} / {DEMO_PASSWORD} (LOCAL DEMO ONLY, never in production)"
        )
