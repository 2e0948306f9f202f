"""Request rates per client: one rate for every request (`user`, or `anon` by IP address) and one per kind of
work (`tag`, `llm`, `jobs`, `import`), set in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] from the environment.

Counts live in the Redis of Django's cache (every setting's), so every gunicorn worker and thread shares them. A
sliding log: one sorted set per client and scope holds the times of the requests let through in the last period,
and one Lua script drops the expired, counts and adds, atomically across workers. So "120 per minute" holds for
any 60 seconds, not only for each minute of the clock (a fixed window lets twice the rate through across the
turn of a minute). When the cache is unreachable, or is not Redis, requests are let through (and logged): the
limits protect the service, they are not worth an outage of their own.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import redis
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

# The route (URL name) → the kind of work it starts. Requests to other routes count only against user/anon.
ROUTE_SCOPES = {
    "api-tag": "tag",
    "api-recipe-tag": "tag",
    "api-recipes-tag-batch": "jobs",
    "api-recipes-import": "import",
    "api-run-judge": "llm",  # every judgement is a call to the model
}
# Tagging requests with one of these strategies call the LLM: they count against `llm` instead of `tag`.
LLM_STRATEGIES = frozenset({"llm", "hybrid"})

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# KEYS[1]: the client's log; ARGV: now (ms), period (ms), the limit, a unique member. Returns 0 when the request
# is let through, else the milliseconds until the oldest logged request leaves the period.
_SLIDING_LOG = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local wait = 0
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
else
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(oldest[2]) + tonumber(ARGV[2]) - tonumber(ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return wait
"""


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: int

    def __str__(self) -> str:
        unit = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}[self.seconds]
        return f"{self.requests} per {unit}"


def rate_parse(text: str | None) -> Rate | None:
    """Parse "120/min" as Rate(120, 60); None or "" is no limit. Raises ValueError on anything else."""
    if not text:
        return None
    count, _, period = text.partition("/")
    if not count.strip().isdigit() or not period.strip() or period.strip()[0] not in _PERIODS:
        raise ValueError(f"{text!r} is not a rate such as 120/min (a number, then /s, /min, /hour or /day)")
    return Rate(requests=int(count), seconds=_PERIODS[period.strip()[0]])


class ClientThrottled(Throttled):
    """A 429 that says which limit was reached; the error handler puts `error_details` in `details`."""

    def __init__(self, *, scope: str, rate: Rate, wait: int) -> None:
        super().__init__(
            wait=wait,
            detail=f"Too many requests ({scope}): at most {rate}. Try again in {wait} s.",
        )
        self.error_details = {"scope": scope, "limit": str(rate), "retry_after": wait}


@functools.cache
def _warn_not_redis(backend: str) -> None:
    logger.warning("Request rates not counted: the cache is %s, not Redis", backend)


def clock_ms() -> int:
    """The time requests are logged at, in milliseconds (the web servers' clocks, which NTP keeps together)."""
    return int(time.time() * 1000)


class _WindowThrottle(BaseThrottle, ABC):
    """A sliding period per client and scope; subclasses say which scope a request counts against (None: none)."""

    @abstractmethod
    def scope(self, request: Request, view: Any) -> str | None: ...

    def allow_request(self, request: Request, view: Any) -> bool:
        scope = self.scope(request, view)
        if scope is None:
            return True
        # Read at each request (not at import, as DRF's throttles do) so that settings overrides apply.
        configured = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
        rate = rate_parse(str(configured) if configured else None)
        if rate is None:
            return True
        user = request.user
        ident = f"user:{user.pk}" if user and user.is_authenticated else f"ip:{self.get_ident(request)}"
        backend = caches["default"]
        if not isinstance(backend, RedisCache):
            _warn_not_redis(type(backend).__name__)
            return True
        key = backend.make_key(f"throttle:{scope}:{ident}")
        period_ms = rate.seconds * 1000
        try:
            # The cache's own connection pool: Django's cache API has no atomic read-modify-write but incr.
            client = backend._cache.get_client(key, write=True)
            wait_ms = int(client.eval(_SLIDING_LOG, 1, key, clock_ms(), period_ms, rate.requests, uuid.uuid4().hex))
        except redis.RedisError as exc:
            logger.warning("Request rates not counted, the cache is unreachable: %s", exc)
            return True
        if wait_ms > 0:
            raise ClientThrottled(scope=scope, rate=rate, wait=max(1, math.ceil(wait_ms / 1000)))
        return True


class ClientRateThrottle(_WindowThrottle):
    """Every API request: `user` per signed-in client, `anon` per IP address."""

    def scope(self, request: Request, view: Any) -> str | None:
        return "user" if request.user and request.user.is_authenticated else "anon"


class WorkRateThrottle(_WindowThrottle):
    """Requests that start work: `tag` (or `llm` for strategies that call the model), `jobs`, `import`."""

    def scope(self, request: Request, view: Any) -> str | None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        match = request.resolver_match
        scope = ROUTE_SCOPES.get(match.url_name or "") if match is not None else None
        if scope == "tag":
            data = request.data
            strategy = data.get("strategy") if isinstance(data, dict) else None
            if isinstance(strategy, str) and strategy in LLM_STRATEGIES:
                return "llm"
        return scope
