"""The console pages: noVNC (VNC) and xterm.js (serial) in the browser (being written)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404


@login_required
def instance_console(request, pk: int):
    raise Http404("not yet")


@login_required
def instance_serial(request, pk: int):
    raise Http404("not yet")
