"""The one module that talks to LLMs: OpenAI-compatible chat completions that must answer in JSON.

- Sources (prompts.sources): staff-editable `LLMSource` rows by name, plus "default" from settings.
- `chat_json` is the only call. It asks for JSON in the best mode the source supports (strict
  json_schema, json_object with a schema, json_object, or none: `ResponseMode`); a server that refuses the
  request format (a 4xx, or a 5xx whose message names the format) gets the next mode at once, not a
  retry, and the source remembers it. It retries transient failures here and only here (bounded
  exponential backoff with jitter, Retry-After honoured up to the cap), records every HTTP attempt as an
  `LLMCall` row (tokens, latency, cost, outcome), keeps each source under its concurrency limit across
  processes (a Redis semaphore), and reserves the most each request can cost against LLM_DAILY_SPEND_CAP
  before sending it (one Redis script checks and reserves, so calls at once never go over the cap),
  settling at the real cost after.
- It sends nothing to a source whose base URL or key variable prompts.endpoints refuses, and its errors
  carry a stable code and a fixed message: what a provider answered stays in the ledger (staff only).
- `llm_source_probe` finds what a source supports with a few tiny requests (recorded as calls of
  prompt_version "probe"): when staff save it in admin, from the admin action, and before the first call
  to a source never probed.

The `LLMCall` rows are written with the caller's database connection: call `chat_json` outside your
own write transaction, or a rollback of yours erases the record of what was spent.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import openai
import redis
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from openai.types.chat import ChatCompletion

from autotagger.redis import redis_client
from prompts.endpoints import api_key_env_problem, base_url_problem
from prompts.models import LLMCall, LLMCallOutcome
from prompts.rendering import schema_for_strict_mode
from prompts.sources import (
    CONSTRAINED_MODES,
    LLMCapabilities,
    LLMError,
    LLMSourceConfig,
    ResponseMode,
    llm_source_capability_lost,
    llm_source_probed,
)

logger = logging.getLogger(__name__)

_ERROR_TEXT_LIMIT = 2000


# --- Errors ---------------------------------------------------------------------------------------
# Each has a stable code and a fixed message: what the provider answered (its error body, a reply that did
# not parse) stays in the `LLMCall` ledger and the logs, which staff read; it never reaches a run's error or
# an API response, where it would read back whatever an edited base URL answered.


class LLMUnavailable(LLMError):
    code = "llm_unavailable"
    status = 503
    default_retryable = True
    default_message = "The language model is unavailable; try again later."


class LLMTimeout(LLMUnavailable):
    code = "llm_timeout"
    status = 504
    default_message = "The language model did not answer in time; try again later."


class LLMRejected(LLMUnavailable):
    """The provider refused the request (a 4xx: model name, key, parameters): it fails the same way again."""

    code = "llm_rejected"
    status = 502
    default_retryable = False
    default_message = "The language model rejected the request; staff can see why in the LLM call ledger."


class LLMRateLimited(LLMError):
    code = "llm_rate_limited"
    status = 503
    default_retryable = True
    default_message = "The language model is rate-limiting requests; try again later."


class LLMBadReply(LLMError):
    code = "llm_bad_reply"
    status = 502
    default_message = "The language model gave no usable reply."


class LLMSpendingCapReached(LLMError):
    code = "spending_cap_reached"
    status = 503
    default_message = "Today's LLM spending cap (LLM_DAILY_SPEND_CAP) is reached; no call was made."


class LLMBusy(LLMError):
    code = "llm_busy"
    status = 503
    default_retryable = True
    default_message = "The language model is busy with other requests; try again later."


class LLMSourceRefused(LLMError):
    """A source whose key variable or base URL breaks the rules of prompts.endpoints: nothing is sent."""

    code = "llm_source_refused"
    status = 503
    default_message = "The LLM source's settings are refused (its base URL or key variable); see admin."


# --- Typed values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatResult:
    """The reply of the successful attempt. Its tokens, latency and cost are that attempt's; every attempt
    (failed ones too) is in the `LLMCall` ledger, e.g. `run.llm_calls`."""

    data: dict[str, Any]
    text: str
    token_logprobs: list[tuple[str, float]] | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    latency_ms: float
    cost: float
    mode: str  # the ResponseMode that worked: "json_schema", "json_object_schema", "json_object" or "none"
    attempts: int  # HTTP requests made, refused modes and retries included

    @property
    def constrained(self) -> bool:
        """Whether the reply was decoded under the schema, so its token log-probabilities do not describe
        the choice (see prompts.rendering)."""
        return self.mode in CONSTRAINED_MODES


# --- Spend ----------------------------------------------------------------------------------------


def spend_today(*, source: str | None = None) -> float:
    """USD recorded since midnight (TIME_ZONE), for one source or all of them."""
    start = timezone.make_aware(datetime.combine(timezone.localdate(), datetime.min.time()))
    calls = LLMCall.objects.filter(created_at__gte=start, created_at__lt=start + timedelta(days=1))
    if source is not None:
        calls = calls.filter(source=source)
    return float(calls.aggregate(total=Sum("cost"))["total"] or 0.0)


# Today's spend and the reservations of calls in flight, in Redis so that one script checks and reserves at
# once across every process: KEYS[1] the day's settled spend (seeded from the ledger when missing: Redis
# restarted, or a new day), KEYS[2] reservations scored by lease expiry, KEYS[3] their amounts. A worker
# that dies mid-call leaves a reservation that its lease frees, as with the concurrency slots.
# Returns {1, spent, reserved} when reserved, {0, spent, reserved} when over the cap, {-1} when unseeded.
_RESERVE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local ttl = tonumber(ARGV[6])
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[1], ARGV[5], 'NX', 'EX', ttl)
end
local spent = redis.call('GET', KEYS[1])
if not spent then
  return {-1}
end
spent = tonumber(spent)
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[3], token)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local reserved = 0
for _, amount in ipairs(redis.call('HVALS', KEYS[3])) do
  reserved = reserved + tonumber(amount)
end
local amount = tonumber(ARGV[2])
if spent + reserved + amount > tonumber(ARGV[1]) then
  return {0, tostring(spent), tostring(reserved)}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
return {1, tostring(spent), tostring(reserved)}
"""

# Drop the reservation and add what the call really cost (a missing day is seeded from the ledger, which
# already holds this call, at the next reservation).
_SETTLE_SCRIPT = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[1], ARGV[2])
end
return 1
"""

# Tokens a chat template adds around the messages (role markers, separators), at most, per request.
_TEMPLATE_TOKENS = 64
_SPEND_KEYS_TTL_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True)
class _Reservation:
    keys: tuple[str, str, str]
    token: str
    amount: float


def spending_cap() -> float:
    """LLM_DAILY_SPEND_CAP in USD; 0: no cap."""
    return max(0.0, float(settings.LLM_DAILY_SPEND_CAP or 0.0))


def source_is_priced(source: LLMSourceConfig) -> bool:
    return source.price_input_per_1k > 0 or source.price_output_per_1k > 0


def _cost_bound(source: LLMSourceConfig, params: dict[str, Any]) -> float:
    """The most one request with `params` can cost: no tokenizer makes more prompt tokens than the request
    body has bytes (plus the chat template's), and the reply stops at max_tokens."""
    body = len(json.dumps(params, ensure_ascii=False).encode("utf-8"))
    input_tokens = body + _TEMPLATE_TOKENS
    output_tokens = int(params["max_tokens"])
    return (input_tokens * source.price_input_per_1k + output_tokens * source.price_output_per_1k) / 1000


def spend_keys_prefix() -> str:
    """Per database, like the ledger the day's spend is seeded from: two deployments (or two test runs)
    sharing a Redis keep their own."""
    return f"autotagger:llm:spend:{connection.settings_dict['NAME']}"


def _spend_keys() -> tuple[str, str, str]:
    day = f"{spend_keys_prefix()}:{timezone.localdate().isoformat()}"
    return (day, f"{day}:leases", f"{day}:amounts")


def _spend_reserve(source: LLMSourceConfig, params: dict[str, Any]) -> _Reservation | None:
    """Reserve the most the request can cost under LLM_DAILY_SPEND_CAP (None: no cap); raises
    LLMSpendingCapReached when today's spend, the calls in flight and this one would go over it."""
    cap = spending_cap()
    if cap <= 0:
        return None
    if not source_is_priced(source):
        # The start-up check refuses this for the settings source and rows; a row priced 0 since then is
        # refused here rather than called for free under a cap.
        raise LLMSourceRefused(
            "The LLM source has no prices while a daily spending cap is set; set its prices in admin.",
            details={"source": source.name},
        )
    reservation = _Reservation(keys=_spend_keys(), token=uuid.uuid4().hex, amount=_cost_bound(source, params))
    lease = 2 * source.timeout_seconds + 30
    client = redis_client()
    seed = ""
    try:
        for _ in range(2):
            args = (cap, repr(reservation.amount), reservation.token, lease, seed, _SPEND_KEYS_TTL_SECONDS)
            answer = client.eval(_RESERVE_SCRIPT, 3, *reservation.keys, *args)
            if int(answer[0]) != -1:
                break
            seed = repr(spend_today())
    except redis.RedisError as exc:
        logger.exception("The LLM spending cap (Redis at REDIS_URL) is unreachable")
        raise LLMUnavailable(details={"source": source.name}) from exc
    if int(answer[0]) != 1:
        logger.warning(
            "LLM spending cap of $%.2f reached: $%s spent today, $%s reserved by calls in flight, $%.6f asked "
            "for a call to %s",
            cap,
            answer[1],
            answer[2],
            reservation.amount,
            source.name,
        )
        raise LLMSpendingCapReached(details={"cap": cap})
    return reservation


def _spend_settle(reservation: _Reservation | None, *, cost: float) -> None:
    if reservation is None:
        return
    try:
        redis_client().eval(_SETTLE_SCRIPT, 3, *reservation.keys, reservation.token, repr(cost))
    except redis.RedisError:
        # The lease frees the reservation; the ledger holds the cost and seeds the day again if Redis lost it.
        logger.exception("Unable to settle an LLM spend reservation; its lease will free it")


# --- Concurrency ----------------------------------------------------------------------------------

# A semaphore as a sorted set of holders scored by lease expiry (Redis server time), rather than a bare
# INCR/DECR counter: a worker that dies mid-call frees its slot when its lease runs out, even while
# other workers keep the key busy (a TTL on a shared counter would only fire after a quiet period).
_ACQUIRE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
if redis.call('TTL', KEYS[1]) < lease then
  redis.call('EXPIRE', KEYS[1], math.ceil(lease) + 1)
end
return 1
"""


def _slot_key(source: LLMSourceConfig) -> str:
    return f"autotagger:llm:slots:{source.name}"


@contextmanager
def _slot(source: LLMSourceConfig, *, wait: float) -> Iterator[None]:
    """Hold one of the source's `max_concurrency` slots for one HTTP attempt (released in `finally`),
    waiting at most `wait` seconds for one."""
    client = redis_client()
    key = _slot_key(source)
    token = uuid.uuid4().hex
    # Long enough for any live attempt (the timeout bounds each read, not the whole response).
    lease = 2 * source.timeout_seconds + 30
    deadline = time.monotonic() + wait
    pause = 0.02
    try:
        while not client.eval(_ACQUIRE_SCRIPT, 1, key, source.max_concurrency, token, lease):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning(
                    "All %d slots of LLM source %s stayed busy for %gs (LLM_SLOT_WAIT_SECONDS, or what was left "
                    "of the call's budget)",
                    source.max_concurrency,
                    source.name,
                    wait,
                )
                raise LLMBusy(details={"source": source.name, "waited": wait})
            time.sleep(min(remaining, pause * random.uniform(0.5, 1.5)))
            pause = min(pause * 2, 0.5)
    except redis.RedisError as exc:
        logger.exception("The LLM concurrency limiter (Redis at REDIS_URL) is unreachable")
        raise LLMUnavailable(details={"source": source.name}) from exc
    try:
        yield
    finally:
        try:
            client.zrem(key, token)
        except redis.RedisError:
            # The lease frees the slot; the reply (or the error being raised) matters more than the slot.
            logger.exception("Unable to release the LLM slot of source %s; its lease will free it", source.name)


# --- The call -------------------------------------------------------------------------------------

_clients: dict[tuple[str, str, float], openai.OpenAI] = {}
_clients_lock = threading.Lock()


def _client(source: LLMSourceConfig) -> openai.OpenAI:
    """The SDK client for `source`; raises LLMSourceRefused, before anything is sent, for a base URL or key
    variable that prompts.endpoints refuses (a row edited in the database, bypassing admin)."""
    problem = base_url_problem(source.base_url) or api_key_env_problem(source.api_key_env)
    if problem:
        logger.error("LLM source %s refused, nothing sent: %s", source.name, problem)
        raise LLMSourceRefused(details={"source": source.name})
    key = (source.base_url, source.api_key, source.timeout_seconds)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = openai.OpenAI(
                base_url=source.base_url,
                # A placeholder rather than None: None would make the SDK send OPENAI_API_KEY to any endpoint.
                api_key=source.api_key or "unused",
                timeout=source.timeout_seconds,
                max_retries=0,  # retries happen in chat_json, where each attempt is recorded
            )
        return _clients[key]


@dataclass
class _Attempt:
    outcome: str
    error: str = ""
    retry_after: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    result: dict[str, Any] | None = None
    text: str = ""
    token_logprobs: list[tuple[str, float]] | None = None


_RETRIED = {
    LLMCallOutcome.TIMEOUT,
    LLMCallOutcome.CONNECTION,
    LLMCallOutcome.RATE_LIMITED,
    LLMCallOutcome.SERVER_ERROR,
    LLMCallOutcome.BAD_REPLY,
    LLMCallOutcome.REFUSED,
}


def llm_call_budget_seconds() -> float:
    """The longest one `chat_json` call may take: every attempt waiting all of LLM_SLOT_WAIT_SECONDS for a
    slot and all of LLM_TIMEOUT_SECONDS for the reply, plus the longest backoff between attempts.

    `chat_json` never runs past it, whatever a source's own timeout: it shortens an attempt's timeout and
    makes no further attempt that could not finish within it. The tasks that call a model are given time
    limits that hold it (tagging.checks refuses to start otherwise).
    """
    attempts = 1 + max(0, int(settings.LLM_MAX_RETRIES))
    per_attempt = float(settings.LLM_SLOT_WAIT_SECONDS) + float(settings.LLM_TIMEOUT_SECONDS)
    return attempts * per_attempt + (attempts - 1) * float(settings.LLM_RETRY_MAX_SECONDS)


# The shortest timeout worth giving an attempt (or the source's own, if shorter): with less time left in
# the call's budget, it stops retrying instead.
MIN_ATTEMPT_SECONDS = 1.0


def _response_format(mode: ResponseMode, schema: dict[str, Any] | None, schema_name: str) -> dict[str, Any] | None:
    if mode == ResponseMode.JSON_SCHEMA:
        strict = schema_for_strict_mode(schema)
        return {"type": "json_schema", "json_schema": {"name": schema_name, "strict": True, "schema": strict}}
    if mode == ResponseMode.JSON_OBJECT_SCHEMA:
        return {"type": "json_object", "schema": schema}
    if mode == ResponseMode.JSON_OBJECT:
        return {"type": "json_object"}
    return None


# What a server says when it refuses a request format or log-probabilities (llama.cpp: HTTP 500 "Input
# should be 'text' or 'json_object'"; others: 400 "response_format ... is not supported").
_NAMES_FORMAT = re.compile(r"response_format|json_schema|json_object|schema|grammar", re.IGNORECASE)
_NAMES_LOGPROBS = re.compile(r"logprob", re.IGNORECASE)
# A refusal of this schema (say, too large for strict mode), not of the mode: fall back for this call only.
_SCHEMA_AT_FAULT = re.compile(r"invalid (json )?schema|schema (is )?invalid", re.IGNORECASE)


def _refused(attempt: _Attempt, *, asked_format: bool, asked_logprobs: bool) -> str | None:
    """ "logprobs" or "format" when the attempt failed because the server refuses what was asked: a 4xx, or
    a 5xx whose message names it (a bare 5xx is a server fault, retried)."""
    if attempt.outcome not in (LLMCallOutcome.CLIENT_ERROR, LLMCallOutcome.SERVER_ERROR):
        return None
    if asked_logprobs and _NAMES_LOGPROBS.search(attempt.error):
        return "logprobs"
    if asked_format and _NAMES_FORMAT.search(attempt.error):
        return "format"
    return None


def _chat_params(
    source: LLMSourceConfig,
    *,
    mode: ResponseMode,
    system: str,
    user: str,
    schema: dict[str, Any] | None,
    schema_name: str,
    logprobs: bool,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": source.model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": int(settings.LLM_MAX_OUTPUT_TOKENS),
    }
    response_format = _response_format(mode, schema, schema_name)
    if response_format is not None:
        params["response_format"] = response_format
    if logprobs:
        params["logprobs"] = True
    return params


@dataclass(frozen=True)
class ChatRequest:
    """The body of a chat request as `chat_json` first sends it, and the mode it asks in: what a Batch API line
    carries (prompts.batches), so that a batched question is the live one."""

    body: dict[str, Any]
    mode: str


def chat_request(
    *,
    source: LLMSourceConfig,
    system: str,
    user: str,
    schema: dict[str, Any] | None,
    schema_name: str,
    want_logprobs: bool,
) -> ChatRequest:
    """The request `chat_json` would send first for these arguments (the best mode the source supports, its
    log-probabilities if it returns them); call `llm_source_ready` first for a source never probed."""
    mode = source.capabilities.modes(schema=schema is not None)[0]
    logprobs = want_logprobs and source.capabilities.logprobs
    body = _chat_params(
        source, mode=mode, system=system, user=user, schema=schema, schema_name=schema_name, logprobs=logprobs
    )
    return ChatRequest(body=body, mode=mode.value)


def llm_source_ready(*, source: LLMSourceConfig) -> LLMSourceConfig:
    """`source`, probed first if it never was (as `chat_json` does before its first call)."""
    if source.probed:
        return source
    return llm_source_probe(source=source, deadline=time.monotonic() + llm_call_budget_seconds() / 2).source


def chat_json(
    *,
    source: LLMSourceConfig,
    system: str,
    user: str,
    schema: dict[str, Any] | None,
    schema_name: str,
    want_logprobs: bool,
    prompt_version: str,
    run_id: int | None = None,
) -> ChatResult:
    """Ask `source` for a JSON object; retries transient failures and bad replies, records every attempt.

    The request starts in the best mode the source supports (with `schema`, if given, in the modes that
    take one); a refused mode falls back at once to the next (`ChatResult.mode` says which worked), and
    refused log-probabilities are dropped, both remembered on the source. A source never probed is probed
    first (within the call's budget).

    Raises LLMSpendingCapReached or LLMSourceRefused (before a request), LLMBusy, LLMUnavailable (connection
    errors, 5xx after the retries; LLMTimeout for timeouts; LLMRejected for other 4xx, at once),
    LLMRateLimited or LLMBadReply. Unless the mode is
    constrained, the caller must validate `data` against its schema. Call it outside your write
    transaction (see the module docstring). It takes at most `llm_call_budget_seconds()`.
    """
    deadline = time.monotonic() + llm_call_budget_seconds()
    if not source.probed:
        # At most half the call's budget, so that the call itself keeps time for an attempt.
        probe_deadline = time.monotonic() + llm_call_budget_seconds() / 2
        source = llm_source_probe(source=source, deadline=probe_deadline).source
    modes = list(source.capabilities.modes(schema=schema is not None))
    logprobs = want_logprobs and source.capabilities.logprobs

    max_attempts = 1 + max(0, int(settings.LLM_MAX_RETRIES))
    client = _client(source)
    attempt: _Attempt | None = None
    number = tries = 0
    while True:
        number += 1
        tries += 1
        mode = modes[0]
        params = _chat_params(
            source, mode=mode, system=system, user=user, schema=schema, schema_name=schema_name, logprobs=logprobs
        )
        response_format = params.get("response_format")
        reservation = _spend_reserve(source, params)
        cost = 0.0
        try:
            with _slot(source, wait=min(float(settings.LLM_SLOT_WAIT_SECONDS), _left(deadline))):
                timeout = min(source.timeout_seconds, max(MIN_ATTEMPT_SECONDS, _left(deadline)))
                started = time.perf_counter()
                attempt = _attempt(client, {**params, "timeout": timeout})
                latency_ms = (time.perf_counter() - started) * 1000
            refused = _refused(attempt, asked_format=response_format is not None, asked_logprobs=logprobs)
            if refused is not None:
                attempt.outcome = LLMCallOutcome.FORMAT_REFUSED
            cost = _attempt_cost(source, attempt)
            _record(
                source,
                attempt,
                cost=cost,
                prompt_version=prompt_version,
                run_id=run_id,
                number=number,
                latency_ms=latency_ms,
            )
        finally:
            _spend_settle(reservation, cost=cost)
        if attempt.outcome == LLMCallOutcome.OK:
            assert attempt.result is not None
            return ChatResult(
                data=attempt.result,
                text=attempt.text,
                token_logprobs=attempt.token_logprobs,
                input_tokens=attempt.input_tokens,
                output_tokens=attempt.output_tokens,
                cached_tokens=attempt.cached_tokens,
                latency_ms=latency_ms,
                cost=cost,
                mode=mode.value,
                attempts=number,
            )
        if refused is not None:
            # Not a fault to retry: the same request is refused every time. Ask the next way at once.
            if refused == "logprobs":
                logprobs = False
                source = llm_source_capability_lost(source=source, capability="logprobs")
            else:
                if not _SCHEMA_AT_FAULT.search(attempt.error):
                    source = llm_source_capability_lost(source=source, capability=mode.value)
                modes.pop(0)
            logger.warning(
                "LLM source %s refused %s (%s); asking without it",
                source.name,
                "log-probabilities" if refused == "logprobs" else f"response format {mode.value}",
                attempt.error[:200],
            )
            tries -= 1
            if _left(deadline) < min(MIN_ATTEMPT_SECONDS, source.timeout_seconds):
                break
            continue
        if attempt.outcome not in _RETRIED or tries == max_attempts:
            break
        delay = _backoff(tries, attempt.retry_after)
        if _left(deadline) - delay < min(MIN_ATTEMPT_SECONDS, source.timeout_seconds):
            logger.warning(
                "LLM call to %s failed (%s); no time left for attempt %d within the call's budget of %.0fs",
                source.name,
                attempt.outcome,
                number + 1,
                llm_call_budget_seconds(),
            )
            break
        logger.warning(
            "LLM call to %s failed (%s: %s); attempt %d of %d, retrying in %.2fs",
            source.name,
            attempt.outcome,
            attempt.error[:200],
            tries,
            max_attempts,
            delay,
        )
        time.sleep(delay)

    assert attempt is not None
    raise _final_error(source, attempt, attempts=number)


def _attempt_cost(source: LLMSourceConfig, attempt: _Attempt) -> float:
    return (
        attempt.input_tokens * source.price_input_per_1k + attempt.output_tokens * source.price_output_per_1k
    ) / 1000


def _record(
    source: LLMSourceConfig,
    attempt: _Attempt,
    *,
    cost: float,
    prompt_version: str,
    run_id: int | None,
    number: int,
    latency_ms: float,
) -> None:
    """Write the attempt to the ledger."""
    LLMCall.objects.create(
        source=source.name,
        model=source.model,
        prompt_version=prompt_version,
        run_id=run_id,
        attempt=number,
        input_tokens=attempt.input_tokens,
        output_tokens=attempt.output_tokens,
        cached_tokens=attempt.cached_tokens,
        latency_ms=latency_ms,
        cost=cost,
        outcome=attempt.outcome,
        error=attempt.error[:_ERROR_TEXT_LIMIT],
    )


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _send(client: openai.OpenAI, params: dict[str, Any]) -> ChatCompletion | _Attempt:
    """One HTTP request: the completion, or the failure classified; never raises for what the provider does."""
    try:
        completion = client.chat.completions.create(**params)
    except openai.APITimeoutError as exc:
        return _Attempt(LLMCallOutcome.TIMEOUT, str(exc))
    except openai.APIConnectionError as exc:
        return _Attempt(LLMCallOutcome.CONNECTION, f"{exc}: {exc.__cause__ or ''}".rstrip(": "))
    except openai.APIStatusError as exc:
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        message = f"HTTP {status}: {body.get('message') or exc.message}"
        if status == 429:
            return _Attempt(LLMCallOutcome.RATE_LIMITED, message, retry_after=_retry_after(exc.response.headers))
        if status >= 500:
            return _Attempt(LLMCallOutcome.SERVER_ERROR, message, retry_after=_retry_after(exc.response.headers))
        if status == 408:  # the provider's own request timeout
            return _Attempt(LLMCallOutcome.TIMEOUT, message)
        return _Attempt(LLMCallOutcome.CLIENT_ERROR, message)
    except (openai.APIError, ValueError) as exc:
        # A 2xx body that is not a chat completion (invalid JSON raises ValueError from the SDK).
        return _Attempt(LLMCallOutcome.BAD_REPLY, f"Unreadable response body: {exc}")
    if not isinstance(completion, ChatCompletion):
        # The SDK hands back the raw text when the response is not JSON.
        return _Attempt(LLMCallOutcome.BAD_REPLY, f"The response is not a chat completion: {str(completion)[:200]!r}")
    return completion


def _attempt(client: openai.OpenAI, params: dict[str, Any]) -> _Attempt:
    """One HTTP request for a JSON reply, classified; never raises for what the provider does."""
    sent = _send(client, params)
    return sent if isinstance(sent, _Attempt) else _read_completion(sent)


def _read_completion(completion: ChatCompletion) -> _Attempt:
    attempt = _judge_reply(completion)
    _read_usage(completion, attempt)
    return attempt


def _read_usage(completion: ChatCompletion, attempt: _Attempt) -> None:
    usage = completion.usage
    if usage is not None:
        details = usage.prompt_tokens_details
        attempt.input_tokens = int(usage.prompt_tokens or 0)
        attempt.output_tokens = int(usage.completion_tokens or 0)
        attempt.cached_tokens = int((details.cached_tokens if details is not None else 0) or 0)


def _judge_reply(completion: ChatCompletion) -> _Attempt:
    try:
        choice = completion.choices[0]
        content = choice.message.content or ""
        refusal = choice.message.refusal
        finish_reason = choice.finish_reason
    except (AttributeError, IndexError, TypeError) as exc:
        return _Attempt(LLMCallOutcome.BAD_REPLY, f"The completion has no message: {exc}")
    if refusal:
        return _Attempt(LLMCallOutcome.REFUSED, f"The model refused: {refusal}", text=content)
    if finish_reason == "content_filter":
        return _Attempt(LLMCallOutcome.REFUSED, "The reply was withheld by the content filter", text=content)
    if not content.strip():
        return _Attempt(LLMCallOutcome.BAD_REPLY, f"Empty reply (finish_reason {finish_reason})")
    try:
        data = json.loads(content)
    except ValueError as exc:
        return _Attempt(
            LLMCallOutcome.BAD_REPLY,
            f"The reply is not valid JSON ({exc}; finish_reason {finish_reason}): {content[:200]!r}",
            text=content,
        )
    if not isinstance(data, dict):
        return _Attempt(
            LLMCallOutcome.BAD_REPLY, f"The reply is JSON but not an object: {content[:200]!r}", text=content
        )
    token_logprobs = None
    if choice.logprobs is not None and choice.logprobs.content is not None:
        token_logprobs = [(item.token, float(item.logprob)) for item in choice.logprobs.content]
    return _Attempt(LLMCallOutcome.OK, result=data, text=content, token_logprobs=token_logprobs)


def _retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if the provider sent one."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential from LLM_RETRY_BASE_SECONDS with jitter, never above LLM_RETRY_MAX_SECONDS; a
    Retry-After asks for at least that long (still capped)."""
    base = float(settings.LLM_RETRY_BASE_SECONDS)
    cap = float(settings.LLM_RETRY_MAX_SECONDS)
    exponential = min(cap, base * 2 ** (attempt - 1))
    delay = random.uniform(exponential / 2, exponential)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(cap, delay)


def _final_error(source: LLMSourceConfig, attempt: _Attempt, *, attempts: int) -> LLMError:
    """The caller's error: a stable code, a fixed message and what it may know (no provider text, which
    is logged here and kept in the ledger)."""
    logger.warning(
        "LLM call to %s (%s) failed after %d attempt(s): %s: %s",
        source.name,
        source.model,
        attempts,
        attempt.outcome,
        attempt.error[:500],
    )
    details = {"source": source.name, "attempts": attempts, "outcome": attempt.outcome}
    if attempt.outcome == LLMCallOutcome.RATE_LIMITED:
        return LLMRateLimited(details=details)
    if attempt.outcome in (LLMCallOutcome.BAD_REPLY, LLMCallOutcome.REFUSED):
        return LLMBadReply(details=details)
    if attempt.outcome in (LLMCallOutcome.CLIENT_ERROR, LLMCallOutcome.FORMAT_REFUSED):
        # A request the provider rejects (bad model name, key, parameters) fails the same way next time.
        return LLMRejected(details=details)
    if attempt.outcome == LLMCallOutcome.TIMEOUT:
        return LLMTimeout(details=details)
    return LLMUnavailable(details=details)


# --- The probe ------------------------------------------------------------------------------------

PROBE_PROMPT_VERSION = "probe"
# Per request (or the source's own timeout, if shorter): a small local server decoding by a grammar on a busy
# machine can take this long for the few tokens asked.
PROBE_TIMEOUT_SECONDS = 30.0
PROBE_BUDGET_SECONDS = 60.0  # for all of them; a probe that runs out stops and changes nothing it did not see
# Enough for the schema modes' reply ({"probe": PROBE_WORD}) and a tool call; the json_object and logprobs
# checks ask for one token.
PROBE_MAX_TOKENS = 24
# A value the model has no reason to write unless the decoder holds it to the schema: a reply that has it
# shows the schema was enforced, not just accepted.
PROBE_WORD = "kq7"
_PROBE_SCHEMA = {
    "type": "object",
    "properties": {"probe": {"type": "string", "enum": [PROBE_WORD]}},
    "required": ["probe"],
    "additionalProperties": False,
}
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "record_answer",
        "description": "Record the answer.",
        "parameters": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    },
}


@dataclass(frozen=True)
class LLMProbe:
    """What a probe saw, and the source as it now stands (`source.capabilities`: the probe's findings,
    unless staff set them)."""

    source: LLMSourceConfig
    seen: LLMCapabilities
    summary: str
    finished: bool  # False: it stopped early (timeout, connection, busy, budget); what it saw is kept
    calls: int


class _ProbeStopped(Exception):
    pass


def llm_source_probe(*, source: LLMSourceConfig, deadline: float | None = None) -> LLMProbe:
    """Find what `source` supports with a few tiny requests, most important first: strict json_schema and
    json_object with a schema (each counted only if the reply obeys a schema the model could not guess),
    plain json_object, log-probabilities, a forced tool call. Each request is recorded as an `LLMCall` of
    prompt_version "probe". A refusal or an ignored feature counts as unsupported; another failure leaves
    that capability as it was. A timeout or connection error stops the probe: what it saw until then is
    kept, the rest stays as it was, and a source that never answered counts as never probed (probed again
    at its next use). Bounded by PROBE_TIMEOUT_SECONDS per request and PROBE_BUDGET_SECONDS in all (or
    `deadline`, a time.monotonic(), if sooner); it never raises for what the server does.
    """
    budget_end = time.monotonic() + PROBE_BUDGET_SECONDS
    deadline = budget_end if deadline is None else min(deadline, budget_end)
    try:
        client = _client(source)
    except LLMSourceRefused as exc:
        summary = f"not probed: {exc.message}"
        return LLMProbe(source=source, seen=source.capabilities, summary=summary, finished=False, calls=0)
    seen = source.capabilities
    notes: list[str] = []
    calls = answered = 0

    def ask(label: str, params: dict[str, Any]) -> ChatCompletion | _Attempt:
        nonlocal calls, answered
        if _left(deadline) < MIN_ATTEMPT_SECONDS:
            raise _ProbeStopped(f"{label}: no time left")
        request = {
            "model": source.model,
            "max_tokens": PROBE_MAX_TOKENS,
            "temperature": 0,
            **params,
            "timeout": min(source.timeout_seconds, PROBE_TIMEOUT_SECONDS, _left(deadline)),
        }
        reservation = _spend_reserve(source, request)
        cost = 0.0
        try:
            with _slot(source, wait=min(float(settings.LLM_SLOT_WAIT_SECONDS), _left(deadline))):
                started = time.perf_counter()
                sent = _send(client, request)
                latency_ms = (time.perf_counter() - started) * 1000
            recorded = sent if isinstance(sent, _Attempt) else _Attempt(LLMCallOutcome.OK)
            if not isinstance(sent, _Attempt):
                _read_usage(sent, recorded)
            calls += 1
            cost = _attempt_cost(source, recorded)
            _record(
                source,
                recorded,
                cost=cost,
                prompt_version=PROBE_PROMPT_VERSION,
                run_id=None,
                number=1,
                latency_ms=latency_ms,
            )
        finally:
            _spend_settle(reservation, cost=cost)
        if recorded.outcome in (LLMCallOutcome.TIMEOUT, LLMCallOutcome.CONNECTION):
            raise _ProbeStopped(f"{label}: {recorded.outcome} ({recorded.error[:120]})")
        answered += 1
        return sent

    def schema_mode(response_format: dict[str, Any]) -> ChatCompletion | _Attempt:
        messages = [{"role": "user", "content": "Reply with a JSON object."}]
        return ask(str(response_format["type"]), {"messages": messages, "response_format": response_format})

    def enforced(sent: ChatCompletion | _Attempt) -> tuple[str, bool | None]:
        if isinstance(sent, _Attempt):
            return _probe_failure(sent, names=_NAMES_FORMAT)
        if _judge_reply(sent).result == {"probe": PROBE_WORD}:
            return "enforced", True
        return "accepted, not enforced", False

    def accepted(sent: ChatCompletion | _Attempt) -> tuple[str, bool | None]:
        return _probe_failure(sent, names=_NAMES_FORMAT) if isinstance(sent, _Attempt) else ("accepted", True)

    def logprobs(sent: ChatCompletion | _Attempt) -> tuple[str, bool | None]:
        if isinstance(sent, _Attempt):
            return _probe_failure(sent, names=_NAMES_LOGPROBS)
        choice = sent.choices[0] if sent.choices else None
        content = choice.logprobs.content if choice is not None and choice.logprobs is not None else None
        return ("returned", True) if content else ("not returned", False)

    def tool_called(sent: ChatCompletion | _Attempt) -> tuple[str, bool | None]:
        if isinstance(sent, _Attempt):
            return _probe_failure(sent, names=re.compile(r"tool|function", re.IGNORECASE))
        made = (sent.choices[0].message.tool_calls or []) if sent.choices else []
        names = [getattr(getattr(call, "function", None), "name", None) for call in made]
        return ("called", True) if "record_answer" in names else ("ignored", False)

    checks: list[tuple[str, str, Any, Any]] = [
        (
            "json_schema",
            "json_schema",
            lambda: schema_mode(
                {"type": "json_schema", "json_schema": {"name": "probe", "strict": True, "schema": _PROBE_SCHEMA}}
            ),
            enforced,
        ),
        (
            "json_object+schema",
            "json_object_schema",
            lambda: schema_mode({"type": "json_object", "schema": _PROBE_SCHEMA}),
            enforced,
        ),
        (
            "json_object",
            "json_object",
            # One token shows the mode is accepted (a server decoding free JSON by a grammar is slow per token).
            lambda: ask(
                "json_object",
                {
                    "messages": [{"role": "user", "content": 'Reply with the JSON object {"ok": true}.'}],
                    "response_format": {"type": "json_object"},
                    "max_tokens": 1,
                },
            ),
            accepted,
        ),
        (
            "logprobs",
            "logprobs",
            lambda: ask(
                "logprobs",
                {"messages": [{"role": "user", "content": "Say ok."}], "logprobs": True, "max_tokens": 1},
            ),
            logprobs,
        ),
        (
            "tools",
            "tools",
            lambda: ask(
                "tools",
                {
                    "messages": [{"role": "user", "content": "Call record_answer with ok set to true."}],
                    "tools": [_PROBE_TOOL],
                    "tool_choice": {"type": "function", "function": {"name": "record_answer"}},
                },
            ),
            tool_called,
        ),
    ]
    stopped = ""
    try:
        for label, capability, request, judge in checks:
            verdict, supported = judge(request())
            notes.append(f"{label}: {verdict}")
            if supported is not None:
                seen = replace(seen, **{capability: supported})
    except (_ProbeStopped, LLMBusy, LLMUnavailable, LLMSpendingCapReached, LLMSourceRefused) as exc:
        stopped = exc.message if isinstance(exc, LLMError) else str(exc)
        logger.warning("Probe of LLM source %s stopped: %s", source.name, stopped)

    if not answered:
        summary = f"not probed: {stopped}"
        updated = llm_source_probed(source=source, seen=source.capabilities, summary=summary, at=None)
        return LLMProbe(source=updated, seen=seen, summary=summary, finished=False, calls=calls)
    if stopped:
        notes.append(f"stopped, the rest unchanged: {stopped}")
    summary = "; ".join(notes)
    if source.capabilities_from_staff:
        summary += " (capabilities kept as staff set them)"
    updated = llm_source_probed(source=source, seen=seen, summary=summary, at=timezone.now())
    logger.info("Probed LLM source %s: %s", source.name, summary)
    return LLMProbe(source=updated, seen=seen, summary=summary, finished=not stopped, calls=calls)


def _probe_failure(attempt: _Attempt, *, names: re.Pattern[str]) -> tuple[str, bool | None]:
    """("refused (...)", False) for a 4xx, or a 5xx whose message `names` the feature; ("inconclusive (...)",
    None) for anything else (a server fault says nothing about the feature)."""
    brief = " ".join(attempt.error.split())[:200]
    if attempt.outcome == LLMCallOutcome.CLIENT_ERROR or (
        attempt.outcome == LLMCallOutcome.SERVER_ERROR and names.search(attempt.error)
    ):
        return f"refused ({brief})", False
    return f"inconclusive ({attempt.outcome}: {brief})", None
