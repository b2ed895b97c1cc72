#!/bin/sh
# Apply migrations (when RUN_MIGRATIONS=true), then become the container's command.
# In docker/compose.yaml only the one-shot "migrate" service migrates, so several web
# replicas never race each other over the same migration.
set -eu

if [ "${RUN_MIGRATIONS:-true}" = "true" ]; then
    python manage.py migrate --noinput
fi

exec "$@"
