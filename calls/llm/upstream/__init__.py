"""A small HTTP/1.1 client for one job: POST a JSON body, read back server-sent events.

Why not the openai SDK over httpx: every layer of that stack (the SDK's request building
and auth wrappers, httpx, httpcore, anyio, h11, the SDK's SSE decoder) runs on the event
loop that also answers every call's pings and streams every other call's answer. Measured
on the 2-core benchmark machine: ~3.2 ms of CPU per 20-token answer, about 45% of the
socket server's CPU at 100 calls. This client does the same work in a fraction of that:
one ``asyncio.Protocol`` per connection parses the response as bytes arrive, and the
answer's task is woken once per event.

What it supports is what chat-completion endpoints use: ``http``/``https`` (one shared TLS
context), keep-alive connections pooled per origin and event loop, chunked or
length-delimited or close-delimited bodies, no compression (it asks for ``identity``).
Anything else (a redirect, an error status) raises :class:`UpstreamError`. A stream that
is left early (a newer request cancelled the answer) closes its connection, which is how
the endpoint learns to stop generating.
"""
