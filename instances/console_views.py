"""The console pages: noVNC (VNC) and xterm.js (serial) in the browser.

The page itself holds no secret: its script asks the API for a ticket (POST
/api/v1/instances/<id>/console/, with the session's CSRF token) each time it connects, and
opens the socket with it. Who may see the page is the access layer's answer, as for the
instance page; who may open the console is decided again by the ticket and the socket.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from cloudpanel.projects import access

from . import selectors
from .consoles import CONSOLE_STATES


def _page(request, pk: int, template: str):
    instance = get_object_or_404(selectors.instance_detail_for(request.user), pk=pk)
    return render(
        request,
        template,
        {
            "instance": instance,
            "can_act": access.can_act(request.user, instance.project),
            "console_ready": instance.state in CONSOLE_STATES,
            "ticket_url": f"/api/v1/instances/{instance.pk}/console/",
        },
    )


@login_required
def instance_console(request, pk: int):
    return _page(request, pk, "instances/console.html")


@login_required
def instance_serial(request, pk: int):
    return _page(request, pk, "instances/serial.html")
