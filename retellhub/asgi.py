"""ASGI entry point: HTTP (Django) and WebSocket (Channels) in one application.

Any ASGI server can serve ``retellhub.asgi:application`` (daphne, uvicorn, hypercorn).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellhub.settings")

# Built before anything imports models: it sets Django up.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from calls.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
