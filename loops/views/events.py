"""POST /events/eventbridge/: A2I's status-change events from an EventBridge API destination.

Not a dashboard page, so none of the role decorators: the caller is EventBridge, which
authenticates with a bearer token (the connection's API-key header), not a session.
CSRF does not apply to it (no cookie is involved) and no session is read or written.
"""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from loops import tasks
from loops.models import ReceivedEvent
from loops.services.event_parsing import MAX_EVENT_BYTES, InvalidEvent, parse_body
from loops.services.events import apply_events

log = logging.getLogger(__name__)


@csrf_exempt
def eventbridge(request):
    """202 with the counts when the events were applied or were duplicates; 400, 401 or 413
    (with a JSON error) otherwise, and then nothing is written. 404 for any request when
    no token is set, so a deployment without events shows no endpoint at all."""
    token = settings.A2I_EVENTS_TOKEN
    if not token:
        raise Http404("the events endpoint is off (A2I_EVENTS_TOKEN is not set)")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant time: the comparison must not tell a caller how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = _error(401, "missing or wrong bearer token")
        response["WWW-Authenticate"] = "Bearer"
        return response
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return _error(400, "malformed Content-Length")
    if declared > MAX_EVENT_BYTES:
        return _error(413, f"body of {declared} bytes; an EventBridge event is at most {MAX_EVENT_BYTES} bytes")
    body = request.read(MAX_EVENT_BYTES + 1)
    if len(body) > MAX_EVENT_BYTES:
        return _error(413, f"body over {MAX_EVENT_BYTES} bytes; an EventBridge event is at most that")
    try:
        events = parse_body(body)
    except InvalidEvent as exc:
        log.warning("event rejected: %s", exc)
        return _error(400, str(exc))
    report = apply_events(events, transport=ReceivedEvent.Transport.HTTPS)
    tasks.after_events(report)
    return JsonResponse({"received": len(events), **report.counts()}, status=202)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)
