"""Create the default alert rules (`expiring`, `sync_stale`, over every flow definition) and an
e-mail channel they notify. Idempotent: rules and the channel are matched by name and kept.

`make run` runs it so a newcomer sees an alert fire from the simulated workforce's
abandoned loops; in production, create rules on the alerts page instead.
"""

from django.core.management.base import BaseCommand

from loops.services.alerts import ensure_default_rules


class Command(BaseCommand):
    help = "Create the default alert rules (expiring, sync_stale) and an e-mail channel for them."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="admin@localhost", help="Where the channel sends (default admin@localhost).")

    def handle(self, *args, **options):
        rules = ensure_default_rules(options["email"])
        names = ", ".join(f"{rule.name} ({rule.kind})" for rule in rules)
        self.stdout.write(f"Alert rules: {names}; notifying {options['email']}")
