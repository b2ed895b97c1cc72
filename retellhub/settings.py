"""retellhub settings: one module, every value from the environment (see config/env.example).

Embedded defaults (no variable set, ``DEBUG=true``): SQLite file, in-memory channel layer,
scripted responder. Production: ``DEBUG`` unset or false, secrets required, PostgreSQL and
Redis through ``DATABASE_URL`` and ``REDIS_URL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from retellhub import databases
from retellhub.databases import database_config
from retellhub.env import env_bool, env_choice, env_int, env_list, env_secret, env_str

# Lets admin and other generic classes be subscripted for type checking at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

# Development conveniences that must never reach production: with DEBUG off each of these
# has to come from the environment, and start-up stops with a clear message otherwise.
DEV_SECRET_KEY = "django-insecure-retellhub-development-only"  # noqa: S105
DEV_RETELL_API_KEY = "key_retellhub_dev"


def _required_secret(name: str, dev_default: str) -> str:
    value = env_secret(name)
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. It is required when DEBUG is off; set it (or {name}_FILE) "
        "in the environment, or set DEBUG=true for local development."
    )


SECRET_KEY = _required_secret("SECRET_KEY", DEV_SECRET_KEY)

# One key or a comma-separated list: during a rotation both the old and the new webhook
# key verify. Which one matched is recorded on every stored delivery.
RETELL_API_KEYS: list[str] = [
    key.strip()
    for key in _required_secret("RETELL_API_KEY", DEV_RETELL_API_KEY).split(",")
    if key.strip()
]
RETELL_API_KEY = RETELL_API_KEYS[0]

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # daphne first: it replaces runserver with an ASGI server serving HTTP and WebSocket.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    # The outbox: django-tasks (Django 6's django.tasks, backported) with its database
    # backend, and the side effects it runs (notifications/).
    "django_tasks",
    "django_tasks_db",
    "notifications",
    "calls",
    "accounts",
]

MIDDLEWARE = [
    # First, so the latency it records covers every other middleware too.
    "retellhub.metrics.RequestLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: keeps the chain above in one thread hop under ASGI (see the class).
    "retellhub.middleware.SyncMiddlewareChain",
]

ROOT_URLCONF = "retellhub.urls"
WSGI_APPLICATION = "retellhub.wsgi.application"
ASGI_APPLICATION = "retellhub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": database_config(DATABASE_URL, test_dir=BASE_DIR)}
# psycopg's prepare threshold where statements are prepared (retellhub/databases.py).
PREPARE_THRESHOLD = databases.PREPARE_THRESHOLD
# Whether these connections price out sequential scans: the webhook writer processes' on
# the project's own pool (retellhub/databases.py).
DATABASE_INDEX_SCANS_ONLY = databases.INDEX_SCANS_ONLY_OPTION in DATABASES["default"].get(
    "OPTIONS", {}
).get("options", "")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
CHANNEL_LAYERS: dict[str, dict[str, Any]] = (
    {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    if REDIS_URL
    else {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = BASE_DIR / "media"

# --- Webhook ingestion -------------------------------------------------------------------
# Bodies above this many bytes answer 413 without being read further.
WEBHOOK_MAX_BODY_BYTES = env_int("WEBHOOK_MAX_BODY_BYTES", 5 * 1024 * 1024)
# Under ASGI, answer POST /webhook on its lean endpoint (calls/webhook_asgi.py) rather than
# through Django's middleware and DRF: same answers, a fraction of the CPU. Off: the DRF view.
WEBHOOK_FAST_PATH = env_bool("WEBHOOK_FAST_PATH", True)
# Source-address allowlist for /webhook (Retell publishes 100.20.5.228). Empty: off.
WEBHOOK_ALLOWED_IPS = env_list("WEBHOOK_ALLOWED_IPS")
# How many reverse proxies append to X-Forwarded-For in front of this server. 0: use the
# socket's peer address and ignore the header, which a client could forge.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# Threads that run the webhook's transaction and keep their database connection between
# deliveries (calls/dbwork.py). SQLite has one writer at a time: a second thread only waits
# on the lock by sleeping and polling, which measured 855 ms p99 at 16 concurrent
# deliveries against 232 ms with one thread, for the same throughput. On PostgreSQL a
# second thread overlaps one batch's round trips with the next batch's work; more threads
# made smaller batches, each paying its own statements and commit: at 16 concurrent
# deliveries on the 2-core machine, 4 threads cost 1.2 ms of server CPU per delivery and
# 1.0 ms of PostgreSQL CPU, against 0.9 and 0.8 with 2 threads, and answered fewer.
_SQLITE = DATABASES["default"]["ENGINE"] == databases.SQLITE_ENGINE
DB_WORKER_THREADS = env_int("DB_WORKER_THREADS", 1 if _SQLITE else 2)
# Where the webhook's batches are written under ASGI: "process", a child process of each
# server process (calls/writer_process.py), or "thread", the database threads above. The
# child takes storage off the server's interpreter lock: on the 2-core benchmark machine,
# SQLite at 16 concurrent deliveries went from 1,273-1,465 to 1,698-1,814 req/s.
WEBHOOK_WRITER = env_choice("WEBHOOK_WRITER", "process", ("process", "thread"))
# Writer processes per server process. SQLite has one writer at a time; on PostgreSQL a
# second overlaps one batch's round trips with another batch's work, without sharing an
# interpreter lock as threads do.
WEBHOOK_WRITER_PROCESSES = env_int("WEBHOOK_WRITER_PROCESSES", 1 if _SQLITE else 2)

# --- Call socket (/llm-websocket/<call_id>) and responders -----------------------------------
# The default agent profile (calls without an AgentProfile row for their agent_id): a JSON
# file, with AGENT_RESPONDER picking its responder. See calls/llm/profiles.py.
AGENT_PROFILE_FILE = env_str(
    "AGENT_PROFILE_FILE", str(BASE_DIR / "config" / "agent-profiles" / "default.json")
)
AGENT_RESPONDER = env_str("AGENT_RESPONDER", "scripted")
if AGENT_RESPONDER not in {"scripted", "openai"}:
    raise ImproperlyConfigured(f"AGENT_RESPONDER must be scripted or openai: {AGENT_RESPONDER!r}")
# Any OpenAI-compatible chat-completions endpoint; empty base URL: the SDK's default.
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
OPENAI_API_KEY = env_secret("OPENAI_API_KEY")
OPENAI_MODEL = env_str("OPENAI_MODEL", "gpt-4o-mini")
# Whole-answer budget; past it the caller hears the fallback line instead of silence.
LLM_ANSWER_TIMEOUT_MS = env_int("LLM_ANSWER_TIMEOUT_MS", 8000)
# How long the begin message waits for call_details when the greeting needs call data.
LLM_CALL_DETAILS_WAIT_MS = env_int("LLM_CALL_DETAILS_WAIT_MS", 3000)
# After an end_call answer, close with 1000 this long after it unless the caller talks on.
LLM_END_CALL_CLOSE_MS = env_int("LLM_END_CALL_CLOSE_MS", 10000)
# The live transcript is written at most this often per call (and once at the end).
LLM_TRANSCRIPT_SAVE_INTERVAL_MS = env_int("LLM_TRANSCRIPT_SAVE_INTERVAL_MS", 2000)
# Live monitor (/live/): at most one update per call this often to browsers (the newest).
LIVE_BROADCAST_INTERVAL_MS = env_int("LIVE_BROADCAST_INTERVAL_MS", 1000)
# Larger text frames are logged and ignored. Keep daphne's --websocket-max-message-size
# above it, or daphne closes the socket first (its default is 1 MiB).
LLM_SOCKET_MAX_FRAME_BYTES = env_int("LLM_SOCKET_MAX_FRAME_BYTES", 1024 * 1024)
# Optional protection, off when empty: ?token=<value> in the socket URL, and a source
# allowlist (defaults to the webhook's). Both are checked before the socket is accepted.
LLM_SOCKET_TOKEN = env_secret("LLM_SOCKET_TOKEN")
LLM_SOCKET_ALLOWED_IPS = env_list("LLM_SOCKET_ALLOWED_IPS", ",".join(WEBHOOK_ALLOWED_IPS))

# --- REST API (/api/) ----------------------------------------------------------------------
# Every API endpoint needs a signed-in user: a bearer token (first, so that an anonymous
# request gets 401 with a Bearer challenge instead of 403) or an admin session. The webhook
# sets its own signature authentication and is unaffected.
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
# Cursor pages: the default and the largest page size a client may ask for (larger is 400).
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50)
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 500)

SPECTACULAR_SETTINGS = {
    "TITLE": "retellhub API",
    "DESCRIPTION": "Calls, events, transcripts and analytics recorded from Retell AI.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and Swagger UI need a signed-in user too, like the rest of /api/.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "PREPROCESSING_HOOKS": ["calls.api.api_endpoints_only"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Outbox: notifications, forwarding, recordings (notifications/) ---------------------
# Tasks are rows in this database, written in the same transaction as the event that
# caused them (the backend's enqueue is a plain INSERT); `manage.py db_worker` runs them.
TASKS: dict[str, Any] = {
    "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
}
# Where links in notifications point (the admin page of a call).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")
# Slack incoming webhook (the URL is the credential) and which events it hears about.
SLACK_WEBHOOK_URL = env_secret("SLACK_WEBHOOK_URL")
SLACK_NOTIFY_EVENTS = env_list("SLACK_NOTIFY_EVENTS", "call_analyzed,error_disconnection")
SLACK_SHOW_PHONE_NUMBERS = env_bool("SLACK_SHOW_PHONE_NUMBERS", False)
# Forward normalised events, signed per Standard Webhooks, to each of these endpoints.
FORWARD_URLS = env_list("FORWARD_URLS")
FORWARD_EVENTS = env_list("FORWARD_EVENTS")  # empty: every event type
FORWARD_SIGNING_SECRET = env_secret("FORWARD_SIGNING_SECRET")
# Copy recordings into MEDIA storage as soon as a recording_url arrives.
RECORDINGS_CAPTURE = env_bool("RECORDINGS_CAPTURE", False)
RECORDINGS_MAX_BYTES = env_int("RECORDINGS_MAX_BYTES", 512 * 1024 * 1024)
# Retries: backoff doubles from OUTBOX_BACKOFF_SECONDS up to the cap; after
# OUTBOX_MAX_ATTEMPTS failed attempts a delivery is dead (admin can retry it).
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 8)
OUTBOX_BACKOFF_SECONDS = env_int("OUTBOX_BACKOFF_SECONDS", 30)
OUTBOX_BACKOFF_MAX_SECONDS = env_int("OUTBOX_BACKOFF_MAX_SECONDS", 3600)
OUTBOX_HTTP_TIMEOUT_SECONDS = env_int("OUTBOX_HTTP_TIMEOUT_SECONDS", 10)

# --- Production: HTTPS behind a proxy, metrics, reconciliation (docker/, README "Production")
# TLS ends at the load balancer. Trust its X-Forwarded-Proto only when proxies are declared
# in front (TRUSTED_PROXY_COUNT), since a client could otherwise claim HTTPS itself.
if env_bool("TRUST_FORWARDED_PROTO", TRUSTED_PROXY_COUNT > 0):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Off by default because a proxy that already redirects, or none that sets the header,
# would loop; the production example turns it on. Probes stay reachable over plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^ping$", r"^health$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
# Browsers remember HSTS for this long, so it starts at 0 and is raised deliberately.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# /metrics: a bearer token when set; otherwise loopback callers only (retellhub/metrics.py).
METRICS_TOKEN = env_secret("METRICS_TOKEN")
# manage.py sync_calls: Retell's API base URL; empty means the SDK's default.
RETELL_BASE_URL = env_str("RETELL_BASE_URL")
# "json": one JSON object per log line (after the same redaction filter); "plain" otherwise.
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json: {LOG_FORMAT!r}")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    # Every handler gets the redaction filter: no phone number, transcript or secret
    # reaches a log line, whichever logger wrote it (retellhub/logging.py).
    "filters": {"redact": {"()": "retellhub.logging.RedactingFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "calls": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # httpx logs every request's full URL at INFO; outbox URLs can carry credentials.
        "httpx": {"level": "WARNING"},
    },
}
if LOG_FORMAT == "json":
    LOGGING["formatters"]["json"] = {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    }
    LOGGING["handlers"]["console"]["formatter"] = "json"
