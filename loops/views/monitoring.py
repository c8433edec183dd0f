"""Machine-readable endpoints: /metrics (Prometheus), /health/ (load balancers), /badges/ (status pages)."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from loops.permissions import VIEW_LOOPS
from loops.services import badges, health, metrics, tokens
from loops.views.access import plain_response

# One registry per process; the collector reads the database at every scrape.
REGISTRY = metrics.registry()


def _allowed_address(request) -> bool:
    """REMOTE_ADDR in A2I_METRICS_ALLOW (addresses or networks). Behind a proxy REMOTE_ADDR is the
    proxy's: allow the proxy only if everything it forwards may read the metrics."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for allowed in settings.A2I_METRICS_ALLOW:
        try:
            if address in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue
    return False


@require_GET
@never_cache
def metrics_view(request):
    """Prometheus text format. Needs an API token (`Authorization: Bearer`) of a viewer, a
    logged-in viewer, or an address in A2I_METRICS_ALLOW: never public by default."""
    if not _allowed_address(request) and not request.user.has_perm(VIEW_LOOPS):
        header = request.headers.get("Authorization")
        token = tokens.authenticate(header)
        if token is None:
            message = "Unknown or revoked API token." if header else "/metrics needs an API token (Authorization: Bearer)."
            return plain_response(message, 401, {"WWW-Authenticate": "Bearer"})
        if not token.user.has_perm(VIEW_LOOPS):
            return plain_response("This token's user has no viewer role.", 403)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


@require_GET
@never_cache
def health_view(request):
    """200 when healthy, 503 otherwise; `?checks=database,broker` limits what decides the status
    (a container healthcheck of the web process, which must not wait for the worker)."""
    wanted = tuple(name for name in request.GET.get("checks", "").split(",") if name) or health.CHECKS
    unknown = [name for name in wanted if name not in health.CHECKS]
    if unknown:
        return JsonResponse({"error": f"unknown check(s) {', '.join(unknown)}; known: {', '.join(health.CHECKS)}"}, status=400)
    healthy, document = health.check_health(wanted)
    return JsonResponse(document, status=200 if healthy else 503)


@require_GET
@never_cache
def badge_view(request, name: str, extension: str):
    """The flow definition's badge, with ?key=<badge key>, or for a logged-in viewer."""
    fds = badges.flow_definitions_for_badge(name, request.GET.get("key"), logged_in=request.user.has_perm(VIEW_LOOPS))
    if not fds:
        raise Http404("No such badge.")
    state = badges.badge_state(fds)
    if extension == "json":
        return JsonResponse(badges.shields_document(name, state))
    return HttpResponse(badges.svg(name, state), content_type="image/svg+xml")
