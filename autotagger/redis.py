"""The one Redis client of a process: the Celery broker's server, also used for the LLM concurrency slots,
the refit debounce and the health check. Every call has a socket timeout."""

from __future__ import annotations

import threading

import redis
from django.conf import settings

SOCKET_TIMEOUT_SECONDS = 5.0

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def redis_client() -> redis.Redis:
    """A client of CELERY_BROKER_URL (REDIS_URL unless the broker is set apart), one per URL and process."""
    url = str(settings.CELERY_BROKER_URL)
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS
            )
        return _clients[url]
