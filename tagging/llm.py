"""The one module that talks to LLMs: OpenAI-compatible chat completions that must answer in JSON.

- Sources: staff-editable `LLMSource` rows by name, plus "default" built from the LLM_BASE_URL,
  LLM_MODEL and LLM_API_KEY settings (a row named "default" replaces it). A row holds the NAME of the
  environment variable with its key, never the key.
- `chat_json` is the only call. It asks for a strict JSON schema when the source supports it (otherwise
  a JSON object, which the caller validates), retries here and only here (bounded exponential backoff
  with jitter, Retry-After honoured up to the cap), records every HTTP attempt as an `LLMCall` row
  (tokens, latency, cost, outcome), keeps each source under its concurrency limit across processes
  (a Redis semaphore), and refuses to call once today's recorded spend reaches LLM_DAILY_SPEND_CAP.

The `LLMCall` rows are written with the caller's database connection: call `chat_json` outside your
own write transaction, or a rollback of yours erases the record of what was spent.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import openai
import redis
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone
from openai.types.chat import ChatCompletion

from tagging.models import LLMCall, LLMCallOutcome, LLMSource

logger = logging.getLogger(__name__)

DEFAULT_SOURCE_NAME = "default"
_ERROR_TEXT_LIMIT = 2000


# --- Errors ---------------------------------------------------------------------------------------


class LLMError(Exception):
    """An LLM call that could not produce a usable reply; `code`, `status` and `retryable` say how to report
    it and whether trying again later may help."""

    code: ClassVar[str] = "llm_error"
    status: ClassVar[int] = 502
    default_retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.retryable = self.default_retryable if retryable is None else retryable


class LLMNotConfigured(LLMError):
    code = "llm_not_configured"
    status = 503


class LLMUnavailable(LLMError):
    code = "llm_unavailable"
    status = 503
    default_retryable = True


class LLMRateLimited(LLMError):
    code = "llm_rate_limited"
    status = 503
    default_retryable = True


class LLMBadReply(LLMError):
    code = "llm_bad_reply"
    status = 502


class LLMSpendingCapReached(LLMError):
    code = "llm_spending_cap"
    status = 503


class LLMBusy(LLMError):
    code = "llm_busy"
    status = 503
    default_retryable = True


# --- Typed values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMSourceConfig:
    name: str
    base_url: str
    model: str
    api_key: str = field(repr=False)  # a secret: kept out of logs and tracebacks
    timeout_seconds: float
    max_concurrency: int
    price_input_per_1k: float
    price_output_per_1k: float
    supports_json_schema: bool
    supports_batch: bool


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
    mode: str  # "json_schema" or "json_object"
    attempts: int


# --- Sources --------------------------------------------------------------------------------------


def _settings_source_configured() -> bool:
    return bool(getattr(settings, "LLM_BASE_URL", "")) and bool(getattr(settings, "LLM_MODEL", ""))


def llm_sources_available() -> list[str]:
    """Names `llm_source_get` accepts: active `LLMSource` rows, and "default" when the settings define it
    and no row of that name (active or not) replaces it."""
    rows = dict(LLMSource.objects.values_list("name", "active"))
    names = {name for name, active in rows.items() if active}
    if DEFAULT_SOURCE_NAME not in rows and _settings_source_configured():
        names.add(DEFAULT_SOURCE_NAME)
    return sorted(names)


def llm_source_get(*, name: str | None = None) -> LLMSourceConfig:
    """The source called `name` (None: LLM_DEFAULT_SOURCE); LLMNotConfigured says what is missing."""
    name = name or str(getattr(settings, "LLM_DEFAULT_SOURCE", DEFAULT_SOURCE_NAME))
    row = LLMSource.objects.filter(name=name).first()
    if row is not None:
        if not row.active:
            raise LLMNotConfigured(
                f"The LLM source {name!r} is inactive; available sources: {_names_for_message()}",
                details={"source": name, "available": llm_sources_available()},
            )
        return _config_from_row(row)
    if name == DEFAULT_SOURCE_NAME:
        return _config_from_settings()
    available = llm_sources_available()
    raise LLMNotConfigured(
        f"Unknown LLM source {name!r}; available sources: {_names_for_message()}",
        details={"source": name, "available": available},
    )


def _names_for_message() -> str:
    return ", ".join(llm_sources_available()) or "none (set LLM_BASE_URL and LLM_MODEL, or add one in admin)"


def _config_from_row(row: LLMSource) -> LLMSourceConfig:
    api_key = ""
    if row.api_key_env:
        api_key = os.environ.get(row.api_key_env, "")
        if not api_key:
            raise LLMNotConfigured(
                f"The LLM source {row.name!r} reads its API key from the environment variable "
                f"{row.api_key_env}, which is not set in this process",
                details={"source": row.name, "missing_env": row.api_key_env},
            )
    return LLMSourceConfig(
        name=row.name,
        base_url=row.base_url,
        model=row.model,
        api_key=api_key,
        timeout_seconds=float(row.timeout_seconds),
        max_concurrency=int(row.max_concurrency),
        price_input_per_1k=float(row.price_input_per_1k),
        price_output_per_1k=float(row.price_output_per_1k),
        supports_json_schema=row.supports_json_schema,
        supports_batch=row.supports_batch,
    )


def _config_from_settings() -> LLMSourceConfig:
    missing = [name for name in ("LLM_BASE_URL", "LLM_MODEL") if not getattr(settings, name, "")]
    if missing:
        raise LLMNotConfigured(
            f"The default LLM source is not configured: set {' and '.join(missing)} "
            f"(or add an LLM source named {DEFAULT_SOURCE_NAME!r} in admin)",
            details={"source": DEFAULT_SOURCE_NAME, "missing_settings": missing},
        )
    return LLMSourceConfig(
        name=DEFAULT_SOURCE_NAME,
        base_url=str(getattr(settings, "LLM_BASE_URL", "")),
        model=str(getattr(settings, "LLM_MODEL", "")),
        api_key=str(getattr(settings, "LLM_API_KEY", "")),
        timeout_seconds=float(getattr(settings, "LLM_TIMEOUT_SECONDS", 30.0)),
        max_concurrency=int(getattr(settings, "LLM_MAX_CONCURRENCY", 4)),
        price_input_per_1k=float(getattr(settings, "LLM_PRICE_INPUT_PER_1K", 0.0)),
        price_output_per_1k=float(getattr(settings, "LLM_PRICE_OUTPUT_PER_1K", 0.0)),
        supports_json_schema=bool(getattr(settings, "LLM_SUPPORTS_JSON_SCHEMA", True)),
        supports_batch=bool(getattr(settings, "LLM_SUPPORTS_BATCH", False)),
    )


# --- Spend ----------------------------------------------------------------------------------------


def spend_today(*, source: str | None = None) -> float:
    """USD recorded since midnight (TIME_ZONE), for one source or all of them."""
    start = timezone.make_aware(datetime.combine(timezone.localdate(), datetime.min.time()))
    calls = LLMCall.objects.filter(created_at__gte=start, created_at__lt=start + timedelta(days=1))
    if source is not None:
        calls = calls.filter(source=source)
    return float(calls.aggregate(total=Sum("cost"))["total"] or 0.0)


def _check_spending_cap() -> None:
    cap = float(getattr(settings, "LLM_DAILY_SPEND_CAP", 0.0) or 0.0)
    if cap <= 0:
        return
    spent = spend_today()
    if spent >= cap:
        raise LLMSpendingCapReached(
            f"Today's LLM spend is ${spent:.4f}, at or over the daily cap of ${cap:.2f} (LLM_DAILY_SPEND_CAP); "
            "no call was made",
            details={"cap": cap, "spent_today": spent},
        )


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

_redis_clients: dict[str, redis.Redis] = {}
_redis_lock = threading.Lock()


def _redis() -> redis.Redis:
    url = str(settings.REDIS_URL)
    with _redis_lock:
        if url not in _redis_clients:
            _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return _redis_clients[url]


def _slot_key(source: LLMSourceConfig) -> str:
    return f"autotagger:llm:slots:{source.name}"


@contextmanager
def _slot(source: LLMSourceConfig) -> Iterator[None]:
    """Hold one of the source's `max_concurrency` slots for one HTTP attempt (released in `finally`)."""
    client = _redis()
    key = _slot_key(source)
    token = uuid.uuid4().hex
    # Long enough for any live attempt (the timeout bounds each read, not the whole response).
    lease = 2 * source.timeout_seconds + 30
    wait = float(getattr(settings, "LLM_SLOT_WAIT_SECONDS", 30.0))
    deadline = time.monotonic() + wait
    pause = 0.02
    try:
        while not client.eval(_ACQUIRE_SCRIPT, 1, key, source.max_concurrency, token, lease):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LLMBusy(
                    f"All {source.max_concurrency} concurrent slots of the LLM source {source.name!r} stayed "
                    f"busy for {wait:g}s (LLM_SLOT_WAIT_SECONDS)",
                    details={"source": source.name, "max_concurrency": source.max_concurrency, "waited": wait},
                )
            time.sleep(min(remaining, pause * random.uniform(0.5, 1.5)))
            pause = min(pause * 2, 0.5)
    except redis.RedisError as exc:
        raise LLMUnavailable(
            f"The LLM concurrency limiter (Redis at REDIS_URL) is unreachable: {exc}",
            details={"source": source.name},
        ) from exc
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

    Raises LLMSpendingCapReached (before any request), LLMBusy, LLMUnavailable (timeouts, connection
    errors, 5xx after the retries; other 4xx at once), LLMRateLimited or LLMBadReply. With mode
    "json_object" the caller must validate `data` against its schema. Call it outside your write
    transaction (see the module docstring). At worst it takes about (LLM_MAX_RETRIES + 1) × (timeout +
    slot wait) plus the backoff sleeps.
    """
    if source.supports_json_schema and schema is not None:
        mode = "json_schema"
        response_format: dict[str, Any] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "strict": True, "schema": schema},
        }
    else:
        mode = "json_object"
        response_format = {"type": "json_object"}
    params: dict[str, Any] = {
        "model": source.model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "response_format": response_format,
    }
    if want_logprobs:
        params["logprobs"] = True

    max_attempts = 1 + max(0, int(getattr(settings, "LLM_MAX_RETRIES", 3)))
    client = _client(source)
    attempt: _Attempt | None = None
    for number in range(1, max_attempts + 1):
        _check_spending_cap()
        with _slot(source):
            started = time.perf_counter()
            attempt = _attempt(client, params)
            latency_ms = (time.perf_counter() - started) * 1000
        cost = (
            attempt.input_tokens * source.price_input_per_1k + attempt.output_tokens * source.price_output_per_1k
        ) / 1000
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
                mode=mode,
                attempts=number,
            )
        if attempt.outcome not in _RETRIED or number == max_attempts:
            break
        delay = _backoff(number, attempt.retry_after)
        logger.warning(
            "LLM call to %s failed (%s: %s); attempt %d of %d, retrying in %.2fs",
            source.name,
            attempt.outcome,
            attempt.error[:200],
            number,
            max_attempts,
            delay,
        )
        time.sleep(delay)

    assert attempt is not None
    raise _final_error(source, attempt, attempts=number)


def _attempt(client: openai.OpenAI, params: dict[str, Any]) -> _Attempt:
    """One HTTP request, classified; never raises for what the provider does."""
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
    return _read_completion(completion)


def _read_completion(completion: ChatCompletion) -> _Attempt:
    attempt = _judge_reply(completion)
    usage = completion.usage
    if usage is not None:
        details = usage.prompt_tokens_details
        attempt.input_tokens = int(usage.prompt_tokens or 0)
        attempt.output_tokens = int(usage.completion_tokens or 0)
        attempt.cached_tokens = int((details.cached_tokens if details is not None else 0) or 0)
    return attempt


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
    base = float(getattr(settings, "LLM_RETRY_BASE_SECONDS", 0.5))
    cap = float(getattr(settings, "LLM_RETRY_MAX_SECONDS", 8.0))
    exponential = min(cap, base * 2 ** (attempt - 1))
    delay = random.uniform(exponential / 2, exponential)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(cap, delay)


def _final_error(source: LLMSourceConfig, attempt: _Attempt, *, attempts: int) -> LLMError:
    details = {"source": source.name, "model": source.model, "attempts": attempts, "outcome": attempt.outcome}
    where = f"LLM source {source.name!r} ({source.model})"
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    if attempt.outcome == LLMCallOutcome.RATE_LIMITED:
        return LLMRateLimited(f"The {where} kept rate-limiting {tries}: {attempt.error}", details=details)
    if attempt.outcome in (LLMCallOutcome.BAD_REPLY, LLMCallOutcome.REFUSED):
        return LLMBadReply(f"No usable JSON reply from the {where} {tries}: {attempt.error}", details=details)
    if attempt.outcome == LLMCallOutcome.CLIENT_ERROR:
        # A request the provider rejects (bad model name, key, parameters) fails the same way next time.
        return LLMUnavailable(f"The {where} rejected the request: {attempt.error}", details=details, retryable=False)
    return LLMUnavailable(f"The {where} is unavailable {tries}: {attempt.error}", details=details)
