from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def overview(request):
    # Placeholder until the dashboard (issue 4) lands.
    return HttpResponse("A2I loop dashboard")
