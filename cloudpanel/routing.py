from django.urls import path

from cloudpanel.jobs.consumers import JobConsumer

websocket_urlpatterns = [
    path("ws/jobs/", JobConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
]

try:  # each app adds its own sockets (consoles, live state)
    from instances.routing import websocket_urlpatterns as instance_sockets

    websocket_urlpatterns += instance_sockets
except ImportError:
    pass
