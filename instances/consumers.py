"""Console sockets: VNC (noVNC) and serial (xterm.js), each opened with a ticket (being written)."""

from __future__ import annotations

from cloudpanel.websockets import NotFoundConsumer


class VncConsoleConsumer(NotFoundConsumer):
    pass


class SerialConsoleConsumer(NotFoundConsumer):
    pass
