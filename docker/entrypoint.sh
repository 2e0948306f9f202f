#!/bin/sh
# Container entrypoint: the first argument picks the role.
#   web                      migrate, optionally load the default taxonomy, then serve with gunicorn
#   worker                   Celery worker
#   beat                     Celery beat (schedules live in the database: django-celery-beat)
#   manage <command> [args]  a Django management command, e.g. `manage ensure_admin`
#   anything else            run as given, e.g. `python manage.py shell` or `sh`
set -eu

cd /app

role="${1:-web}"

case "$role" in
    web)
        python manage.py migrate --noinput
        if [ "${AUTOTAGGER_LOAD_DEFAULT_TAXONOMY:-0}" = "1" ]; then
            # Only into an empty taxonomy, so a restart never overwrites staff edits to default tags;
            # the embeddings are queued for the worker.
            python manage.py taxonomy_import --default --if-empty
        fi
        exec gunicorn autotagger.wsgi:application \
            --bind 0.0.0.0:8000 \
            --workers "${GUNICORN_WORKERS:-2}" \
            --worker-class gthread \
            --threads "${GUNICORN_THREADS:-8}" \
            --timeout 60 \
            --access-logfile -
        ;;
    worker)
        exec celery -A autotagger worker \
            --loglevel "${LOG_LEVEL:-INFO}" \
            --concurrency "${CELERY_CONCURRENCY:-2}" \
            --max-tasks-per-child 200
        ;;
    beat)
        exec celery -A autotagger beat \
            --loglevel "${LOG_LEVEL:-INFO}" \
            --scheduler django_celery_beat.schedulers:DatabaseScheduler
        ;;
    manage)
        shift
        exec python manage.py "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
