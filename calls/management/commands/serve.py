"""``manage.py serve``: HTTP and WebSocket on uvicorn.

Known issue (README, The server): a call socket sometimes never receives
``websocket.disconnect`` here, so daphne remains the default server for call sockets.

``make run`` keeps Django's ``runserver`` (daphne's, with autoreload) for development.
For production any ASGI server can serve ``retellhub.asgi:application``; this command
runs uvicorn with uvloop and httptools and the options this project needs, because on
the 2-core benchmark machine it spent about half of daphne's CPU per request, for webhooks
and call sockets alike (figures in the README, Benchmarks).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

APPLICATION = "retellhub.asgi:application"


def uvicorn_options(*, host: str, port: int, workers: int, access_log: bool) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "access_log": access_log,
        # Django's LOGGING (JSON, redaction) stays in charge of every log line.
        "log_config": None,
        # X-Forwarded-For is read once, by the webhook's TRUSTED_PROXY_COUNT rule; uvicorn
        # rewriting the client address first would apply a second, different rule.
        "proxy_headers": False,
        # Channels' router has no lifespan protocol.
        "lifespan": "off",
        # uvicorn's default WebSocket implementation (websockets' sans-I/O one) sometimes
        # never told the application that a client had gone when the loop was busy during
        # the handshake: the call's session then stayed open and was never recorded
        # (tests/test_simulator_server.py caught it). wsproto's did not, at the same
        # latency on the socket benchmark.
        "ws": "wsproto",
        "server_header": False,
    }


class Command(BaseCommand):
    help = "Serve HTTP and WebSocket on uvicorn; see README, The server (a known socket issue)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to bind")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="processes sharing the port; more than one needs REDIS_URL for live views",
        )
        parser.add_argument(
            "--no-access-log", action="store_true", help="no line per request or socket"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        uvicorn.run(
            APPLICATION,
            **uvicorn_options(
                host=options["host"],
                port=options["port"],
                workers=options["workers"],
                access_log=not options["no_access_log"],
            ),
        )
