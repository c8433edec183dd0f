"""The loop page (by primary key: names are only unique per flow definition) and its refresh."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from loops import a2i
from loops.models import HumanLoop
from loops.services.loop_output import OutputTooLarge, OutputUnreadable, loop_output_expected, read_loop_answers
from loops.services.loop_state import refresh_loop, timeline
from loops.services.settlement import DESCRIBE, settle_unknown_actions
from loops.services.stats import refresh_flow_definition_stats
from loops.views.access import viewer_required


@viewer_required
def loop_detail(request, pk: int):
    loop = get_object_or_404(HumanLoop.objects.select_related("flow_definition"), pk=pk)
    output, output_error, too_large = None, None, None
    if loop_output_expected(loop):
        try:
            output = read_loop_answers(loop)
        except (a2i.OutputUnavailable, OutputUnreadable) as exc:
            output_error = str(exc)
        if isinstance(output, OutputTooLarge):
            output, too_large = None, output
    context = {
        "loop": loop,
        "fd": loop.flow_definition,
        "history": timeline(loop),
        "output": output,
        "output_error": output_error,
        "output_too_large": too_large,
    }
    return render(request, "loops/loop_detail.html", context)


@viewer_required
def loop_output_raw(request, pk: int):
    """The loop's output.json as it is in S3, streamed as a download (never parsed here)."""
    loop = get_object_or_404(HumanLoop.objects.select_related("flow_definition"), pk=pk)
    if not loop.output_s3_uri:
        return HttpResponse("This loop has no output S3 URI.\n", status=404, content_type="text/plain; charset=utf-8")
    region = loop.flow_definition.region or a2i.region_of_arn(loop.arn)
    try:
        obj = a2i.open_human_loop_output(loop.output_s3_uri, region, interactive=True)
    except a2i.OutputUnavailable as exc:
        status = 404 if exc.code in ("NoSuchKey", "NoSuchBucket", "uri") else 502
        return HttpResponse(f"The output cannot be read: {exc}\n", status=status, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(_close_after(obj), content_type="application/json")
    if obj.size is not None:
        response["Content-Length"] = str(obj.size)
    response["Content-Disposition"] = f'attachment; filename="{loop.name}-output.json"'
    return response


def _close_after(obj):
    with obj:
        yield from obj.chunks()


@viewer_required
@require_POST
def loop_refresh(request, pk: int):
    """DescribeHumanLoop now; A2I errors become a message on the loop page, never a 500."""
    loop = get_object_or_404(HumanLoop.objects.select_related("flow_definition"), pk=pk)
    before = (loop.status, loop.deleted_upstream)
    asked_at = timezone.now()
    try:
        loop = refresh_loop(loop)
    except a2i.A2IUnavailable as exc:
        messages.error(request, f"A2I is unreachable: {exc}")
    except a2i.ClientError as exc:
        messages.error(request, f"A2I refused DescribeHumanLoop: {a2i.error_code(exc)}: {a2i.error_message(exc)}")
    else:
        # A stop or delete of this loop that A2I never answered is settled by what it says now.
        settle_unknown_actions(loop.actions.all(), observed_at=asked_at, evidence=DESCRIBE)
        if (loop.status, loop.deleted_upstream) != before:
            refresh_flow_definition_stats(loop.flow_definition)
            messages.success(request, f"Refreshed from A2I: now {loop.status}{' (deleted upstream)' if loop.deleted_upstream else ''}.")
        else:
            messages.info(request, f"Refreshed from A2I: still {loop.status}.")
    return redirect("loops:loop", pk=loop.pk)
