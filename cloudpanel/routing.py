from django.urls import path, re_path

from cloudpanel.jobs.consumers import JobConsumer
from cloudpanel.live.consumers import StatusConsumer
from cloudpanel.websockets import NotFoundConsumer
from instances.consumers import SerialConsoleConsumer, VncConsoleConsumer

websocket_urlpatterns = [
    path("ws/status/", StatusConsumer.as_asgi()),
    path("ws/jobs/", JobConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
    path("ws/instances/<uuid:uuid>/console/", VncConsoleConsumer.as_asgi()),
    path("ws/instances/<uuid:uuid>/serial/", SerialConsoleConsumer.as_asgi()),
]

# Last: any other path is closed cleanly (4404) instead of failing in the router.
websocket_urlpatterns.append(re_path(r"", NotFoundConsumer.as_asgi()))
