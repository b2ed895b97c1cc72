"""ASGI entry point: HTTP (Django) and WebSocket (Channels) in one application.

Any ASGI server can serve ``retellhub.asgi:application`` (daphne, uvicorn, hypercorn).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellhub.settings")

from retellhub.handlers import get_pooled_asgi_application  # noqa: E402

# Built before anything imports models: it sets Django up. Django's own handler, with its
# per-request threads reused (retellhub/handlers.py).
django_asgi_app = get_pooled_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from calls.routing import live_urlpatterns, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                # The call socket: Retell sends no Origin and no cookie (calls/routing.py).
                *websocket_urlpatterns,
                # Browsers' sockets: the session's user, and only from our own hosts.
                re_path(
                    r"^ws/",
                    AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(live_urlpatterns))),
                ),
            ]
        ),
    }
)
