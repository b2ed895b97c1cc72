"""The live monitor's pages (``/live/``). They render an empty frame; calls/static/calls/
live.js fills it from the ``/ws/calls/`` socket (calls/consumers.py::LiveCallsConsumer)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

LIST_SOCKET_PATH = "/ws/calls/"


def _context(request: HttpRequest, *, title: str, socket_path: str) -> dict[str, Any]:
    # The admin's own header, user links and styles: the monitor is part of the console.
    return {**admin.site.each_context(request), "title": title, "live": {"socket": socket_path}}


@staff_member_required
def live_calls_page(request: HttpRequest) -> HttpResponse:
    context = _context(request, title="Live calls", socket_path=LIST_SOCKET_PATH)
    return render(request, "calls/live.html", context)


@staff_member_required
def live_call_page(request: HttpRequest, call_id: str) -> HttpResponse:
    # No 404 for an unknown id: the page may be opened before the call's first event.
    socket_path = f"/ws/calls/{quote(call_id, safe='')}/"
    context = _context(request, title=f"Call {call_id}", socket_path=socket_path)
    context["call_id"] = call_id
    return render(request, "calls/live_call.html", context)
