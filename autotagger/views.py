from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from autotagger.embeddings import embeddings_status
from autotagger.redis import redis_client

logger = logging.getLogger(__name__)


def _database_status() -> dict[str, object]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; the message says which
        logger.exception("Health check: database unreachable")
        return {"ok": False, "error": str(exc)}
    if row is None:
        return {"ok": False, "error": "the pgvector extension is not installed in this database"}
    return {"ok": True, "embedded": settings.EMBEDDED_DATABASE, "pgvector": row[0]}


def _broker_status() -> dict[str, object]:
    try:
        redis_client().ping()
    except redis.RedisError as exc:
        logger.warning("Health check: broker unreachable: %s", exc)
        return {"ok": False, "error": str(exc)}
    return {"ok": True}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, broker and embedding model status: 200 when all are up, 503 otherwise.

    Anyone (a load balancer) learns whether each check passes; only signed-in staff see the details (driver
    errors, versions, model name), which would tell an attacker what runs here and where.
    """
    checks = {
        "database": _database_status(),
        "broker": _broker_status(),
        "embedding_model": embeddings_status(),
    }
    healthy = all(check["ok"] for check in checks.values())
    if not request.user.is_staff:
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503
    )
