"""Discover flow definitions and sync their loops now, in this process (no Celery needed)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from loops import a2i
from loops.models import SyncRun
from loops.services.discovery import discover_flow_definitions
from loops.services.sync import sync_flow_definition


class Command(BaseCommand):
    # No URL/template checks: a cron-style command must not fail on an unrelated module.
    requires_system_checks = []
    help = (
        "Discover the flow definitions of the configured regions (A2I_REGIONS) and sync their loops "
        "from A2I; prints one summary line per flow definition. Exit status 1 when AWS cannot be "
        "reached, credentials are missing or a sync failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--flow-definition", metavar="ARN", help="sync only this flow definition")
        parser.add_argument("--region", help="discover and sync only this region (default: A2I_REGIONS)")
        parser.add_argument("--full", action="store_true", help="full sync (default: incremental)")

    def handle(self, *args, flow_definition=None, region=None, full=False, **options):
        regions = [region] if region else list(settings.A2I_REGIONS)
        if flow_definition:
            try:
                arn_region = a2i.region_of_arn(flow_definition)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if region and region != arn_region:
                raise CommandError(f"--flow-definition is in {arn_region}, not in --region {region}")
            regions = [arn_region]
        try:
            flow_definitions = discover_flow_definitions(regions)
        except (a2i.A2IUnavailable, a2i.ClientError) as exc:
            raise CommandError(f"discovery failed: {a2i.error_message(exc)}") from None
        if flow_definition:
            flow_definitions = [fd for fd in flow_definitions if fd.arn == flow_definition]
            if not flow_definitions:
                raise CommandError(f"no flow definition {flow_definition} in {regions[0]}")
        if not flow_definitions:
            self.stdout.write(f"no flow definitions in {', '.join(regions)}")
            return

        failed = 0
        for fd in flow_definitions:
            try:
                run = sync_flow_definition(fd.pk, full=full)
            except a2i.A2IUnavailable as exc:
                raise CommandError(f"{fd.arn}: {exc}") from None
            self.stdout.write(self.summary(fd, run))
            failed += run.outcome == SyncRun.Outcome.FAILED
        if failed:
            raise CommandError(f"{failed} of {len(flow_definitions)} syncs failed")

    @staticmethod
    def summary(fd, run: SyncRun) -> str:
        seconds = run.duration.total_seconds() if run.duration else 0.0
        line = (
            f"{fd.arn}: {run.kind} {run.outcome} pages={run.pages} seen={run.loops_seen} "
            f"created={run.created} updated={run.updated} marked_deleted={run.marked_deleted} in {seconds:.2f}s"
        )
        return f"{line}: {run.error}" if run.error else line
