"""ASGI entry point: HTTP (Django) and WebSocket (Channels) in one application.

Any ASGI server can serve ``retellhub.asgi:application`` (daphne, uvicorn, hypercorn).
"""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellhub.settings")

from retellhub.handlers import get_pooled_asgi_application  # noqa: E402
from retellhub.heap import settle_start_up_heap  # noqa: E402

# Built before anything imports models: it sets Django up. Django's own handler, with its
# per-request threads reused (retellhub/handlers.py).
django_asgi_app = get_pooled_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from calls.routing import live_urlpatterns, websocket_urlpatterns  # noqa: E402
from calls.webhook_asgi import fast_path_enabled, webhook_endpoint  # noqa: E402


async def http_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/webhook`` on its lean endpoint (calls/webhook_asgi.py); everything else Django."""
    if scope["path"] == scope.get("root_path", "") + "/webhook" and fast_path_enabled():
        await webhook_endpoint(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_application,
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

settle_start_up_heap()
