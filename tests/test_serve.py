"""manage.py serve: the production server's options."""

from __future__ import annotations

from calls.management.commands.serve import uvicorn_options


def test_the_project_keeps_logging_proxies_and_lifespan_its_own_way() -> None:
    options = uvicorn_options(host="0.0.0.0", port=8000, workers=2, access_log=True)  # noqa: S104
    assert options["proxy_headers"] is False  # TRUSTED_PROXY_COUNT alone reads X-Forwarded-For
    assert options["log_config"] is None  # Django's LOGGING formats every line
    assert options["lifespan"] == "off"
    assert options["ws"] == "wsproto"  # see the option's comment
    assert (options["host"], options["port"], options["workers"]) == ("0.0.0.0", 8000, 2)  # noqa: S104
