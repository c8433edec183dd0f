"""Write the stored loops as JSON lines with A2I's field names (deleted ones included)."""

import json

from django.core.management.base import BaseCommand, CommandError

from loops.models import FlowDefinition, HumanLoop, HumanLoopStatus


def iso8601(value) -> str:
    # A2I's own wire format: milliseconds, UTC, "Z".
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class Command(BaseCommand):
    # No URL/template checks: a cron-style command must not fail on an unrelated module.
    requires_system_checks = []
    help = (
        "Export loops as one JSON object a line: HumanLoopName, HumanLoopStatus, CreationTime, "
        "FailureReason, FailureCode, FlowDefinitionArn, HumanLoopArn, DeletedUpstream. "
        "Includes loops deleted upstream. Oldest first."
    )

    def add_arguments(self, parser):
        parser.add_argument("--flow-definition", metavar="ARN", action="append", help="only this flow definition (repeatable)")
        parser.add_argument(
            "--status", action="append", metavar="S", help=f"only this status (repeatable): {', '.join(HumanLoopStatus.values)}"
        )

    def handle(self, *args, flow_definition=None, status=None, **options):
        loops = HumanLoop.objects.all()
        if status:
            unknown = sorted(set(status) - set(HumanLoopStatus.values))
            if unknown:
                raise CommandError(
                    f"unknown status {', '.join(unknown)}: use one of {', '.join(HumanLoopStatus.values)}"
                )
            loops = loops.filter(status__in=status)
        if flow_definition:
            known = set(FlowDefinition.objects.filter(arn__in=flow_definition).values_list("arn", flat=True))
            missing = [arn for arn in flow_definition if arn not in known]
            if missing:
                raise CommandError(f"no flow definition {', '.join(missing)} (run sync_loops first?)")
            loops = loops.filter(flow_definition__arn__in=flow_definition)
        rows = loops.order_by("creation_time", "id").values_list(
            "name", "status", "creation_time", "failure_reason", "failure_code", "flow_definition__arn", "arn",
            "deleted_upstream",
        )
        write = self.stdout.write
        # .iterator(): a million rows are streamed with a server-side cursor, never held at once.
        for name, loop_status, created, reason, code, fd_arn, arn, deleted in rows.iterator(chunk_size=5000):
            write(
                json.dumps(
                    {
                        "HumanLoopName": name,
                        "HumanLoopStatus": loop_status,
                        "CreationTime": iso8601(created),
                        # A2I omits these unless the loop failed: null here.
                        "FailureReason": reason or None,
                        "FailureCode": code or None,
                        "FlowDefinitionArn": fd_arn,
                        "HumanLoopArn": arn,
                        "DeletedUpstream": deleted,
                    }
                )
            )
