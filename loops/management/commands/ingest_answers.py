"""Read the reviewers' answers (output.json) of Completed loops now, in this process: a backfill."""

from __future__ import annotations

import logging
from datetime import UTC

import ciso8601
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from loops.models import FlowDefinition
from loops.services import answers, reviewers, stats


class Command(BaseCommand):
    # No URL/template checks: a cron-style command must not fail on an unrelated module.
    requires_system_checks = []
    help = (
        "Read the output.json of every Completed loop whose answers are not read yet (or are due "
        "for another attempt) and store its answers; then refresh the figures they change. Shows "
        "progress on a terminal (done, rate, time left), one line per batch otherwise. Exit status 1 "
        "when S3 cannot be reached; files that cannot be read are recorded on their loops."
    )

    def add_arguments(self, parser):
        parser.add_argument("--flow-definition", metavar="ARN", help="only the loops of this flow definition")
        parser.add_argument("--since", metavar="ISO", help="only loops created at or after this time (ISO-8601; no offset: UTC)")
        parser.add_argument(
            "--retry-failed", action="store_true", help="also read again the loops whose file was given up or is waiting for a retry"
        )
        parser.add_argument("--limit", type=int, metavar="N", help="read at most N loops in this run")

    def handle(self, *args, flow_definition=None, since=None, retry_failed=False, limit=None, **options):
        fd_id = None
        if flow_definition:
            fd_id = FlowDefinition.objects.filter(arn=flow_definition).values_list("id", flat=True).first()
            if fd_id is None:
                raise CommandError(f"no flow definition {flow_definition} in the database (run sync_loops first)")
        since_at = _parse_since(since) if since else None
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")

        if retry_failed:
            reset = answers.reset_failed(flow_definition_id=fd_id, since=since_at)
            self.stdout.write(f"{reset:,} loops whose file was given up or waiting: reading them again")
        total = answers.due_loops(now=timezone.now(), flow_definition_id=fd_id, since=since_at).count()
        if limit is not None:
            total = min(total, limit)
        if not total:
            self.stdout.write("no loop's answers to read")
            return
        self.stdout.write(f"reading the answers of {total:,} loops")
        interactive = self.stdout.isatty()
        service_logger = logging.getLogger(answers.__name__)
        level = service_logger.level
        if interactive:
            # The progress line replaces the service's one line per batch on a terminal.
            service_logger.setLevel(logging.WARNING)
        try:
            report = answers.ingest_due_answers(
                flow_definition_id=fd_id, since=since_at, limit=limit, progress=lambda r: self.progress(r, total, interactive)
            )
        finally:
            service_logger.setLevel(level)
        if interactive:
            self.stdout.write("")
        for fd in FlowDefinition.objects.filter(pk__in=report.flow_definition_ids):
            stats.refresh_flow_definition_stats(fd)
        if report.answers:
            reviewers.refresh_reviewer_stats()
        self.stdout.write(f"done in {report.seconds:.1f} s: {report.summary()}")
        if report.unavailable:
            raise CommandError(f"S3 unreachable: {report.unavailable}")

    def progress(self, report: answers.IngestReport, total: int, interactive: bool) -> None:
        rate = report.loops / report.seconds if report.seconds else 0.0
        left = max(total - report.loops, 0)
        eta = f"about {left / rate:,.0f} s left" if rate and left else "finishing"
        line = (
            f"{report.loops:,} / {total:,} loops ({100 * min(report.loops, total) / total:.0f} %), "
            f"{rate:,.0f} loops/s, {eta}; {report.answers:,} answers, {report.failed:,} unreadable"
        )
        if interactive:
            self.stdout.write("\r" + line.ljust(100), ending="")
            self.stdout.flush()
        else:
            self.stdout.write(line)


def _parse_since(text: str):
    try:
        moment = ciso8601.parse_datetime(text)
    except ValueError:
        raise CommandError(f"--since {text!r} is not an ISO-8601 date or time") from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise CommandError(f"--since {text!r} is out of range") from None
