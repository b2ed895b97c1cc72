"""``manage.py serve``: HTTP and WebSocket on uvicorn, the production server.

``make run`` keeps Django's ``runserver`` (daphne's, with autoreload) for development.
Any ASGI server can serve ``retellhub.asgi:application``; this command runs uvicorn with
uvloop and httptools and the options this project needs, because on the 2-core benchmark
machine it spent about half of daphne's CPU per request, for webhooks and call sockets
alike (figures in the README, Benchmarks).
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
        # wsproto's WebSocket implementation rather than the default (websockets' sans-I/O
        # one): the same latency on the socket benchmark. Both raise on a send after the
        # client has gone, which calls/consumers.py absorbs.
        "ws": "wsproto",
        "server_header": False,
    }


class Command(BaseCommand):
    help = "Serve HTTP and WebSocket on uvicorn (production); see README, The server."

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
