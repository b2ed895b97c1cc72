"""Retell's Custom LLM WebSocket: protocol messages, the per-call session, and responders.

``protocol`` parses and builds frames, ``session`` is the state machine one connection
drives, ``responders`` produce the answers, ``profiles`` say which responder and lines an
agent uses, ``records`` writes what the socket saw. ``calls/consumers.py`` is the thin
Channels shell around a session.
"""
