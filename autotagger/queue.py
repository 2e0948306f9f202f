"""Sending tasks to the broker: within a few seconds and a bounded number of retries, or one error
(BrokerUnavailable, a 503 for the API) whatever the transport raised; and how many messages wait in the queue.

A request that needs the worker must answer quickly when the broker is down, never hang on kombu's
reconnection loop (by default it retries for as long as the connection timeout allows, then again on publish).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis
from celery import Task, current_app
from django.conf import settings
from kombu.exceptions import KombuError

from autotagger.errors import DomainError
from autotagger.redis import redis_client

logger = logging.getLogger(__name__)

# How kombu's Redis transport names the lists of a queue's priorities other than the default (see
# kombu.transport.redis: PRIORITY_STEPS and the separator).
_PRIORITY_STEPS = (3, 6, 9)
_PRIORITY_SEPARATOR = "\x06\x16"


class BrokerUnavailable(DomainError):
    code = "broker_unavailable"
    status = 503


def _retry_policy() -> dict[str, float]:
    return {
        "max_retries": settings.TASK_ENQUEUE_MAX_RETRIES,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }


def _connection_options() -> dict[str, Any]:
    """The broker's transport options, with connecting bounded as a request can afford."""
    timeout = settings.TASK_ENQUEUE_TIMEOUT_SECONDS
    options: dict[str, Any] = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS or {})
    options.update(
        {
            "socket_timeout": min(float(options.get("socket_timeout") or timeout), timeout),
            "socket_connect_timeout": min(float(options.get("socket_connect_timeout") or timeout), timeout),
            # Connecting (kombu's default_channel) retries this often, not until the connect timeout runs out.
            "max_retries": settings.TASK_ENQUEUE_MAX_RETRIES,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        }
    )
    return options


def tasks_enqueue(task: Task, kwargs_list: Iterable[Mapping[str, Any]], *, countdown: float | None = None) -> int:
    """Send `task` once per keyword set (to run `countdown` seconds from now, if given), over one connection;
    raises BrokerUnavailable if the broker cannot be reached within TASK_ENQUEUE_TIMEOUT_SECONDS and
    TASK_ENQUEUE_MAX_RETRIES. Returns how many were sent (those before a failure were sent)."""
    app = current_app
    sent = 0
    try:
        # The URL is read from settings at each call, as the health check's Redis client does.
        with app.connection_for_write(
            url=settings.CELERY_BROKER_URL,
            connect_timeout=settings.TASK_ENQUEUE_TIMEOUT_SECONDS,
            transport_options=_connection_options(),
        ) as connection:
            producer = connection.Producer()
            for kwargs in kwargs_list:
                task.apply_async(
                    kwargs=dict(kwargs),
                    producer=producer,
                    retry=True,
                    retry_policy=_retry_policy(),
                    countdown=countdown,
                )
                sent += 1
    except (KombuError, redis.RedisError, OSError) as exc:  # kombu wraps most; a raw socket error may slip by
        logger.warning("The task queue is unavailable (%s sent before): %s", sent, exc)
        raise BrokerUnavailable("The task queue is unavailable; try again shortly.", details={}) from exc
    return sent


def task_enqueue(task: Task, *, countdown: float | None = None, **kwargs: Any) -> None:
    """Send one `task` message; raises BrokerUnavailable (see tasks_enqueue)."""
    tasks_enqueue(task, [kwargs], countdown=countdown)


def queue_length() -> int:
    """Messages waiting in this process's task queue (all priorities); raises redis.RedisError when the broker
    cannot be reached."""
    name = settings.CELERY_TASK_DEFAULT_QUEUE
    client = redis_client()
    names = [name, *(f"{name}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]
    pipeline = client.pipeline(transaction=False)
    for queue in names:
        pipeline.llen(queue)
    return int(sum(pipeline.execute()))
