"""Play Retell's side of a call against any Retell backend, and check what comes back.

A top-level package rather than part of ``calls``: it is a *client* of the two wire
protocols (retell-protocol.md A and B), written from the protocol text and not from our
server's code, so that a misunderstanding in ``calls/llm/`` is caught instead of mirrored.
It imports no Django; ``manage.py simulate_call`` only adds the default key from settings.

- ``scenario``: what the caller does (config/scenarios/*.json or command-line flags).
- ``callobject``: the call object and webhook bodies Retell would send.
- ``conformance``: the rules, and the state that decides when a frame breaks one.
- ``webhook_player`` / ``socket_player``: the two halves of a call.
- ``run``: one call, or many at once; ``report``: timeline, JSON, latency figures.
"""
