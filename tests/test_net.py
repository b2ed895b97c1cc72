from __future__ import annotations

import pytest

from calls.net import is_loopback


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.9.9.9", "::1"])
def test_it_knows_loopback_hosts(host: str):
    assert is_loopback(host) is True


@pytest.mark.parametrize("host", [None, "", "10.255.255.1", "100.20.5.228", "example.com", "::2"])
def test_it_refuses_everything_else(host: str | None):
    assert is_loopback(host) is False
