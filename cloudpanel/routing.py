from django.urls import path, re_path

from cloudpanel.jobs.consumers import JobConsumer
from cloudpanel.websockets import NotFoundConsumer

websocket_urlpatterns = [
    path("ws/jobs/", JobConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
]

# Last: any other path is closed cleanly (4404) instead of failing in the router.
websocket_urlpatterns.append(re_path(r"", NotFoundConsumer.as_asgi()))
