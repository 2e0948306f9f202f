"""OpenAI's Batch API: many chat requests in one uploaded file, answered within 24 hours at half price.

The only module that talks to the Files and Batches endpoints; it belongs to the gateway (prompts.gateway),
whose client, error classes, reply checks and ledger it uses:
- `batch_submit` uploads a JSONL of chat requests (each the body `chat_request` builds, so a batched question
  is the live one) and creates the batch; a daily spending cap is checked against the most they can cost.
- `batch_status` reads where the batch stands.
- `batch_cancel` asks the provider to stop a batch we gave up on, so it neither answers nor bills what we no
  longer wait for.
- `batch_results` downloads the output and error files and gives, per custom_id, the `ChatResult` (the reply
  judged exactly as a live one is: JSON object, refusals, token log-probabilities) or the `LLMError`; each line
  is recorded as an `LLMCall` at half the source's prices. A custom_id with no line is left out: the caller
  re-queues it.

Every request has a timeout (LLM_BATCH_TIMEOUT_SECONDS) and no retry here: the caller polls again later, and
a failed submission leaves its runs to the live path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from prompts.gateway import (
    ChatResult,
    LLMError,
    LLMRateLimited,
    LLMRejected,
    LLMSourceRefused,
    LLMSpendingCapReached,
    LLMTimeout,
    LLMUnavailable,
    _Attempt,
    _client,
    _cost_bound,
    _final_error,
    _read_completion,
    _record,
    source_is_priced,
    spend_today,
    spending_cap,
)
from prompts.models import LLMCallOutcome
from prompts.sources import LLMSourceConfig

logger = logging.getLogger(__name__)

BATCH_ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
BATCH_COMPLETION_WINDOW: Literal["24h"] = "24h"
# What the provider charges for a batched request, as a share of its live prices.
BATCH_PRICE_FACTOR = 0.5
# Statuses after which a batch changes no more.
BATCH_FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})

T = TypeVar("T")


class LLMBatchUnsupported(LLMError):
    code = "llm_batch_unsupported"
    status = 400
    default_message = "The LLM source does not offer the Batch API (see its Batch API flag in admin)."


@dataclass(frozen=True)
class BatchStatus:
    batch_id: str
    status: str  # the provider's: validating, in_progress, finalizing, completed, failed, expired, cancelling, ...
    input_file_id: str
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    errors: str  # why the batch failed as a whole (validation), if it did

    @property
    def finished(self) -> bool:
        return self.status in BATCH_FINISHED


@dataclass(frozen=True)
class BatchCall:
    """What the ledger records for one custom_id: the run it was for, the prompt's label and the mode it
    asked in (a constrained mode makes log-probabilities say nothing of the choice)."""

    run_id: int | None
    prompt_version: str
    mode: str


def batch_submit(*, source: LLMSourceConfig, requests: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Upload (custom_id, chat request body) pairs as a JSONL file and create a batch of them; returns the
    provider's batch id. Raises LLMBatchUnsupported for a source without the Batch API, LLMSpendingCapReached
    when the most the requests can cost (at half price) would pass today's cap, and the gateway's errors for
    what the provider answers."""
    if not source.supports_batch:
        raise LLMBatchUnsupported(details={"source": source.name})
    if not requests:
        raise ValueError("a batch needs at least one request")
    _within_cap(source, [body for _, body in requests])
    client = _batch_client(source)
    lines = [
        json.dumps({"custom_id": custom_id, "method": "POST", "url": BATCH_ENDPOINT, "body": body}, ensure_ascii=False)
        for custom_id, body in requests
    ]
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    uploaded = _call(source, "upload", lambda: client.files.create(file=("batch.jsonl", payload), purpose="batch"))
    batch = _call(
        source,
        "create",
        lambda: client.batches.create(
            input_file_id=uploaded.id, endpoint=BATCH_ENDPOINT, completion_window=BATCH_COMPLETION_WINDOW
        ),
    )
    logger.info("Submitted batch %s of %d requests to LLM source %s", batch.id, len(requests), source.name)
    return str(batch.id)


def batch_status(*, source: LLMSourceConfig, batch_id: str) -> BatchStatus:
    """Where the batch stands. Raises the gateway's errors."""
    client = _batch_client(source)
    batch = _call(source, "retrieve", lambda: client.batches.retrieve(batch_id))
    counts = batch.request_counts
    errors = "; ".join(
        f"{error.code or 'error'}: {error.message or ''}" for error in (batch.errors.data if batch.errors else []) or []
    )
    return BatchStatus(
        batch_id=str(batch.id),
        status=str(batch.status),
        input_file_id=str(batch.input_file_id),
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        total=counts.total if counts else 0,
        completed=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        errors=errors[:2000],
    )


def batch_cancel(*, source: LLMSourceConfig, batch_id: str) -> str:
    """Ask the provider to cancel the batch; returns its status after the request (`cancelling` while the
    requests in flight finish). Raises the gateway's errors."""
    client = _batch_client(source)
    batch = _call(source, "cancel", lambda: client.batches.cancel(batch_id))
    logger.info("Cancelled batch %s at LLM source %s: %s", batch_id, source.name, batch.status)
    return str(batch.status)


def batch_results(
    *, source: LLMSourceConfig, status: BatchStatus, calls: Mapping[str, BatchCall]
) -> dict[str, ChatResult | LLMError]:
    """Per custom_id of `calls` that the batch answered: its `ChatResult`, or the `LLMError` a live call would
    have ended with. Each answered line is recorded as an `LLMCall` at half price; lines for other custom_ids
    are logged and ignored, and a custom_id without a line is absent. Raises the gateway's errors when a file
    cannot be downloaded."""
    client = _batch_client(source)
    results: dict[str, ChatResult | LLMError] = {}
    for file_id in (status.output_file_id, status.error_file_id):
        if not file_id:
            continue
        content = _call(source, "download", lambda file_id=file_id: client.files.content(file_id))  # type: ignore[misc]
        for number, line in enumerate(content.text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                custom_id = str(item["custom_id"])
            except (ValueError, KeyError, TypeError):
                logger.warning(
                    "Batch %s, file %s, line %d is unreadable: %r", status.batch_id, file_id, number, line[:200]
                )
                continue
            call = calls.get(custom_id)
            if call is None or custom_id in results:
                logger.warning(
                    "Batch %s answered %r, which it was not asked or answered twice", status.batch_id, custom_id
                )
                continue
            results[custom_id] = _line_result(source, item, call)
    return results


def _line_result(source: LLMSourceConfig, item: dict[str, Any], call: BatchCall) -> ChatResult | LLMError:
    attempt = _line_attempt(item)
    cost = (
        (attempt.input_tokens * source.price_input_per_1k + attempt.output_tokens * source.price_output_per_1k)
        / 1000
        * BATCH_PRICE_FACTOR
    )
    _record(
        source, attempt, cost=cost, prompt_version=call.prompt_version, run_id=call.run_id, number=1, latency_ms=0.0
    )
    if attempt.outcome != LLMCallOutcome.OK:
        return _final_error(source, attempt, attempts=1)
    assert attempt.result is not None
    return ChatResult(
        data=attempt.result,
        text=attempt.text,
        token_logprobs=attempt.token_logprobs,
        input_tokens=attempt.input_tokens,
        output_tokens=attempt.output_tokens,
        cached_tokens=attempt.cached_tokens,
        latency_ms=0.0,
        cost=cost,
        mode=call.mode,
        attempts=1,
    )


def _line_attempt(item: dict[str, Any]) -> _Attempt:
    """One output or error line, classified as a live attempt would be."""
    response = item.get("response") or {}
    error = item.get("error")
    code = response.get("status_code") if isinstance(response, dict) else None
    body = response.get("body") if isinstance(response, dict) else None
    if error or code != 200:
        message = ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = str(body["error"].get("message") or "")
        if isinstance(error, dict):
            message = message or str(error.get("message") or error.get("code") or "")
        text = f"HTTP {code}: {message}" if code else f"Batch error: {message or error}"
        if code == 429:
            return _Attempt(LLMCallOutcome.RATE_LIMITED, text)
        if code is not None and 400 <= code < 500:
            return _Attempt(LLMCallOutcome.CLIENT_ERROR, text)
        return _Attempt(LLMCallOutcome.SERVER_ERROR, text)
    try:
        completion = ChatCompletion.model_validate(body)
    except ValidationError as exc:
        return _Attempt(LLMCallOutcome.BAD_REPLY, f"The batch line is not a chat completion: {exc}"[:500])
    return _read_completion(completion)


def _within_cap(source: LLMSourceConfig, bodies: Sequence[dict[str, Any]]) -> None:
    """Under LLM_DAILY_SPEND_CAP, refuse a batch whose most possible cost (half price) would pass what is left of
    today's. A batch is answered over hours, so nothing is reserved: its lines are recorded when collected."""
    cap = spending_cap()
    if cap <= 0:
        return
    if not source_is_priced(source):
        raise LLMSourceRefused(
            "The LLM source has no prices while a daily spending cap is set; set its prices in admin.",
            details={"source": source.name},
        )
    bound = sum(_cost_bound(source, body) for body in bodies) * BATCH_PRICE_FACTOR
    spent = spend_today()
    if spent + bound > cap:
        logger.warning(
            "Batch to %s refused: $%.4f spent today, up to $%.4f asked, cap $%.2f", source.name, spent, bound, cap
        )
        raise LLMSpendingCapReached(details={"cap": cap})


def _batch_client(source: LLMSourceConfig) -> openai.OpenAI:
    return _client(source).with_options(timeout=float(settings.LLM_BATCH_TIMEOUT_SECONDS), max_retries=0)


def _call(source: LLMSourceConfig, what: str, request: Callable[[], T]) -> T:
    """One Files/Batches request; what the provider answers is logged, the caller gets the gateway's error."""
    try:
        return request()
    except openai.APITimeoutError as exc:
        logger.warning("Batch %s at LLM source %s timed out: %s", what, source.name, exc)
        raise LLMTimeout(details={"source": source.name}) from exc
    except openai.APIConnectionError as exc:
        logger.warning("Batch %s at LLM source %s: no connection: %s", what, source.name, exc)
        raise LLMUnavailable(details={"source": source.name}) from exc
    except openai.APIStatusError as exc:
        logger.warning("Batch %s at LLM source %s: HTTP %s: %s", what, source.name, exc.status_code, exc.message)
        if exc.status_code == 429:
            raise LLMRateLimited(details={"source": source.name}) from exc
        if exc.status_code >= 500:
            raise LLMUnavailable(details={"source": source.name}) from exc
        raise LLMRejected(details={"source": source.name}) from exc
    except (openai.APIError, ValueError) as exc:
        logger.warning("Batch %s at LLM source %s: unreadable answer: %s", what, source.name, exc)
        raise LLMUnavailable(details={"source": source.name}) from exc
