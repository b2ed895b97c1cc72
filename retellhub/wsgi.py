"""WSGI entry point, for HTTP-only deployments (no call socket, no live view)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellhub.settings")

application = get_wsgi_application()
