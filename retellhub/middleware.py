"""Middleware that keeps the request path cheap under ASGI."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase


class SyncMiddlewareChain:
    """Innermost and sync-only, so Django runs the whole middleware chain in sync mode.

    Django's own middleware is both sync- and async-capable; under ASGI it then runs in
    async mode, and each ``process_request`` and ``process_response`` becomes its own
    ``sync_to_async`` thread hop: about fifteen per request. With one sync-only middleware
    at the bottom, Django builds the chain sync instead (its documented capability flags):
    one hop into the chain and one back out for the view, whatever the chain's length.
    Async views still work; Django adapts them.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)
