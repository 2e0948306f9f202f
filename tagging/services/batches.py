"""Queued llm and hybrid runs asked through a provider's Batch API (prompts.batches): half the price of live
calls, answered within 24 hours.

- `llm_batch_submit` takes queued runs of one source that offers the Batch API. Each run is tagged as the
  worker would (`run_complete` with `run_tag_with_llm`) up to the question: a run the cache answers, or a
  hybrid run whose categories the similarity tagger decided alone, is stored at once; the others' questions,
  built as the live call builds them (`chat_request`), go into one batch, each line's custom_id "run-<id>".
  What a run decided before the question (the mode asked in, hybrid's accepted tags and shortlist) is kept
  on its `LLMBatchItem`, the prompt version on the batch. The runs stay `queued`, claimed by the batch, with a
  lease past LLM_BATCH_MAX_WAIT_HOURS: the sweep (tagging.services.runs.runs_requeue_stale) leaves them alone.
- `llm_batch_poll` asks the provider where the batch stands, every LLM_BATCH_POLL_SECONDS (tagging.tasks),
  for at most LLM_BATCH_MAX_WAIT_HOURS. When it is finished (completed, or expired / failed / cancelled with
  whatever it answered), each answer is validated and stored by the same code as a live run's (`run_complete`,
  replaying the answer as the reply), its line recorded in the ledger at half price.
- Runs with no answer, or an error line, or a reply that failed the gateway's checks, are re-queued, and only
  those: into a new batch while the batch's round is under LLM_BATCH_MAX_ROUNDS, then live (`enqueue_live`,
  the worker's run task). A run the batch no longer holds (finished live meanwhile) is skipped: nothing is
  stored twice, nothing is left behind. A batch not finished in time is given up: its runs go live.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from prompts.batches import BatchCall, BatchStatus, batch_cancel, batch_results, batch_status, batch_submit
from prompts.gateway import ChatResult, chat_request, llm_source_ready
from prompts.rendering import PromptTemplates
from prompts.sources import LLMError, LLMNotConfigured, LLMSourceConfig, llm_source_get
from tagging.models import (
    LLMBatch,
    LLMBatchItem,
    LLMBatchItemOutcome,
    LLMBatchStatus,
    RunStatus,
    Strategy,
    TaggingRun,
)
from tagging.selectors import tagging_prompt_active
from tagging.services.config import TaggingConfig, TaggingError, llm_source_resolve
from tagging.services.llm_runs import run_tag_with_llm
from tagging.services.runs import run_complete, run_queued_lease
from tagging.taggers.base import CategoryRequest
from tagging.taggers.hybrid import hybrid_plan_dump, hybrid_plan_load
from tagging.taggers.llm import LLMQuestion, QuestionDeferred

logger = logging.getLogger(__name__)

# Error codes of batch items re-queued without an answer.
BATCH_NO_ANSWER = "llm_batch_no_answer"
BATCH_GIVEN_UP = "llm_batch_given_up"


class BatchUnsupported(TaggingError):
    """The runs' LLM source does not offer the Batch API: send them live."""

    code = "llm_batch_unsupported"
    status = 400


class BatchRunsInvalid(TaggingError):
    """Runs that cannot go into one batch (not queued llm/hybrid runs, another batch's, or of several sources)."""

    code = "llm_batch_runs_invalid"
    status = 400


class BatchSubmitFailed(TaggingError):
    """The provider refused or did not take the batch; its runs are released (queued, unclaimed): send them live."""

    code = "llm_batch_submit_failed"
    status = 502


def batch_lease() -> timedelta:
    """How long a batch holds its runs: past the longest it is waited for, so that the sweep never takes them."""
    return timedelta(hours=float(settings.LLM_BATCH_MAX_WAIT_HOURS)) + timedelta(hours=1)


def batch_max_polls() -> int:
    """The most polls of one batch: enough to wait LLM_BATCH_MAX_WAIT_HOURS at LLM_BATCH_POLL_SECONDS."""
    wait = float(settings.LLM_BATCH_MAX_WAIT_HOURS) * 3600
    return max(1, math.ceil(wait / max(1, int(settings.LLM_BATCH_POLL_SECONDS)))) + 1


def custom_id_of(run_id: int) -> str:
    return f"run-{run_id}"


def _runs_source(runs: Sequence[TaggingRun], *, held_by: LLMBatch | None) -> LLMSourceConfig:
    """The one LLM source of `runs`, which must all be queued llm or hybrid runs that no batch holds (or that
    `held_by` holds); raises BatchRunsInvalid or BatchUnsupported, before anything is stored."""
    claim = held_by.claim if held_by is not None else None
    names: set[str | None] = set()
    for run in runs:
        config = TaggingConfig.from_dict(run.config)
        if run.status != RunStatus.QUEUED or not config.uses_llm:
            raise BatchRunsInvalid(
                f"Run {run.pk} is not a queued llm or hybrid run ({run.status}, {run.strategy}).",
                details={"run": run.pk},
            )
        if run.claimed_by.startswith("llm-batch-") and run.claimed_by != claim:
            raise BatchRunsInvalid(f"Run {run.pk} is already in a batch.", details={"run": run.pk})
        names.add(config.source)
    if len(names) != 1:
        raise BatchRunsInvalid(
            "The runs of one batch must use one LLM source.", details={"sources": sorted(map(str, names))}
        )
    source = llm_source_resolve(config=TaggingConfig.from_dict(runs[0].config))
    if not source.supports_batch:
        raise BatchUnsupported(
            f"The LLM source {source.name!r} does not offer the Batch API; send the runs live.",
            details={"source": source.name},
        )
    return source


def _defer(question: LLMQuestion) -> ChatResult:
    raise QuestionDeferred(question)


@dataclass
class _Deferred:
    run: TaggingRun
    item: LLMBatchItem
    body: dict[str, object]


def llm_batch_submit(*, run_ids: Sequence[int], held_by: LLMBatch | None = None) -> LLMBatch:
    """Ask the model about queued llm/hybrid runs through the Batch API of their source (see the module
    docstring). `held_by`: the batch whose unanswered runs these are (the new batch is its next round).

    Raises BatchRunsInvalid or BatchUnsupported (nothing stored, nothing claimed), or BatchSubmitFailed (the
    provider did not take the batch: the runs not already finished are released, queued and unclaimed, for
    the caller to send live; the batch is kept, given up, with the reason). A run failing before its question
    (its recipe cannot be embedded, say) is failed as the worker would fail it."""
    if not run_ids:
        raise BatchRunsInvalid("A batch needs at least one run.")
    runs = list(TaggingRun.objects.filter(pk__in=run_ids).select_related("recipe").order_by("id"))
    missing = sorted(set(run_ids) - {run.pk for run in runs})
    if missing:
        raise BatchRunsInvalid(f"No runs with ids {missing}.", details={"runs": missing})
    source = llm_source_ready(source=_runs_source(runs, held_by=held_by))
    now = timezone.now()
    with transaction.atomic():
        batch = LLMBatch.objects.create(source=source.name, round=held_by.round + 1 if held_by else 1)
        claimable = TaggingRun.objects.filter(
            pk__in=[run.pk for run in runs],
            status=RunStatus.QUEUED,
            claimed_by=held_by.claim if held_by else "",
        ).select_for_update()
        claimed = set(claimable.values_list("id", flat=True))
        TaggingRun.objects.filter(pk__in=claimed).update(claimed_by=batch.claim, lease_expires_at=now + batch_lease())
    # Read once: every run of the batch is asked in its strategy's words, whatever is activated meanwhile.
    prompts: dict[str, PromptTemplates] = {
        strategy: tagging_prompt_active(strategy=strategy) for strategy in (Strategy.LLM, Strategy.HYBRID)
    }
    batch.prompt = {strategy: asdict(prompt) for strategy, prompt in prompts.items()}
    batch.save(update_fields=["prompt"])
    deferred: list[_Deferred] = []
    for run in runs:
        if run.pk not in claimed:
            continue  # taken by a worker meanwhile
        run.claimed_by = batch.claim
        found = _question_of(run, batch=batch, source=source, prompt=prompts[run.strategy])
        if found is not None:
            deferred.append(found)
    LLMBatchItem.objects.bulk_create([d.item for d in deferred])
    if not deferred:
        batch.status, batch.finished_at = LLMBatchStatus.COLLECTED, timezone.now()
        batch.save(update_fields=["status", "finished_at"])
        return batch
    try:
        batch.provider_batch_id = batch_submit(source=source, requests=[(d.item.custom_id, d.body) for d in deferred])
    except LLMError as exc:
        logger.warning("Batch %s of %d runs not taken by %s: %s", batch.pk, len(deferred), source.name, exc.message)
        _runs_release([d.run.pk for d in deferred], batch=batch)
        LLMBatchItem.objects.filter(batch=batch).update(outcome=LLMBatchItemOutcome.REQUEUED, error_code=exc.code)
        batch.status, batch.finished_at, batch.error = LLMBatchStatus.GIVEN_UP, timezone.now(), exc.message
        batch.save(update_fields=["status", "finished_at", "error"])
        raise BatchSubmitFailed(
            f"The Batch API of {source.name!r} did not take the runs: {exc.message}",
            details={"batch": batch.pk, "llm_error": exc.code},
        ) from exc
    batch.submitted_at = timezone.now()
    batch.save(update_fields=["provider_batch_id", "submitted_at"])
    return batch


def _batch_prompt(batch: LLMBatch, strategy: str) -> PromptTemplates:
    """The prompt the batch asked `strategy`'s runs with (a batch submitted before each strategy had its own
    prompt recorded one for all)."""
    recorded = batch.prompt.get(strategy, batch.prompt) if "label" not in batch.prompt else batch.prompt
    return PromptTemplates(**recorded)


def _question_of(
    run: TaggingRun, *, batch: LLMBatch, source: LLMSourceConfig, prompt: PromptTemplates
) -> _Deferred | None:
    """Tag `run` up to its question: the question and what it decided before it, or None when the run was
    finished without one (stored) or failed (recorded on the run)."""
    config = TaggingConfig.from_dict(run.config)
    ours = TaggingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED, claimed_by=batch.claim)
    run.started_at = timezone.now()

    def tag(requests: Sequence[CategoryRequest]) -> tuple[object, dict[str, object]]:
        return run_tag_with_llm(run, config, requests, ask=_defer, prompt=prompt, source=source)

    try:
        run_complete(run=run, config=config, ours=ours, tag=tag)  # type: ignore[arg-type]
    except QuestionDeferred as deferred:
        # What decided the question, as it was when asked (collection comes hours later): for staleness.
        ours.update(
            taxonomy_version=run.taxonomy_version, content_hash=run.content_hash, tagger_state_id=run.tagger_state_id
        )
        question = deferred.question
        request = chat_request(
            source=source,
            system=question.system,
            user=question.user,
            schema=question.schema,
            schema_name=question.schema_name,
            want_logprobs=question.want_logprobs,
        )
        pending = {
            "mode": request.mode,
            "plan": hybrid_plan_dump(deferred.plan) if deferred.plan is not None else None,
        }
        item = LLMBatchItem(batch=batch, run=run, custom_id=custom_id_of(run.pk), pending=pending)
        return _Deferred(run=run, item=item, body=request.body)
    except Exception:
        # Recorded on the run by run_complete, as the worker records it.
        logger.warning("Run %s failed before its batch question", run.pk, exc_info=True)
    return None


def _runs_release(run_ids: Sequence[int], *, batch: LLMBatch) -> list[int]:
    """Give back the runs `batch` still holds (queued, unclaimed, with a queued run's lease); returns their ids."""
    held = TaggingRun.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED, claimed_by=batch.claim)
    ids = list(held.order_by("id").values_list("id", flat=True))
    TaggingRun.objects.filter(pk__in=ids).update(claimed_by="", lease_expires_at=timezone.now() + run_queued_lease())
    return ids


@dataclass
class BatchPolled:
    """What a poll did: `again` when the batch is still being answered (poll it later); the new batch of the
    runs it left unanswered, if any (poll that one); the runs it sent live."""

    again: bool = False
    next_batch: LLMBatch | None = None
    stored: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    live: list[int] = field(default_factory=list)
    polls: int = 0  # the batch's polls, this one included


# A poll holds its batch's row for the whole collection (one transaction): a collection that fails half-way
# leaves nothing stored and no ledger line recorded, and the next poll collects it all again.
def llm_batch_poll(
    *, batch_id: int, enqueue_live: Callable[[Sequence[int]], object], after_polls: int | None = None
) -> BatchPolled:
    """Poll a submitted batch once; when the provider has finished it, collect it (see the module docstring).

    Runs re-queued live are handed to `enqueue_live` (run ids) after commit. Bounded: a batch polled
    `batch_max_polls()` times, or waited on longer than LLM_BATCH_MAX_WAIT_HOURS, is given up and its runs go
    live. Safe to run twice at once: one poll holds the batch, the other does nothing. `after_polls`: the polls
    the batch had when this one was scheduled; if another poll came between (two chains of polls: the sweep's
    and a late message), this one does nothing and its chain ends."""
    polled = BatchPolled()
    with transaction.atomic():
        batch = (
            LLMBatch.objects.select_for_update(skip_locked=True)
            .filter(pk=batch_id, status=LLMBatchStatus.SUBMITTED)
            .first()
        )
        if batch is None:
            return polled
        if after_polls is not None and batch.polls != after_polls:
            return polled
        batch.polls += 1
        polled.polls = batch.polls
        batch.polled_at = timezone.now()
        if not batch.provider_batch_id:
            # Its submission never finished (the process preparing it died): nothing to wait for.
            _batch_give_up(batch, reason="The batch was never submitted.", polled=polled, enqueue_live=enqueue_live)
            return polled
        try:
            source = llm_source_get(name=batch.source)
        except LLMNotConfigured as exc:
            _batch_give_up(batch, reason=exc.message, polled=polled, enqueue_live=enqueue_live)
            return polled
        try:
            status = batch_status(source=source, batch_id=batch.provider_batch_id)
            results = None
            if status.finished:
                # A download failing half-way takes back the ledger lines it recorded: the next poll records them.
                with transaction.atomic():
                    results = _results(source, batch, status)
        except LLMError as exc:
            logger.warning("Poll %d of batch %s failed: %s", batch.polls, batch.pk, exc.message)
            batch.error = exc.message
            status, results = None, None
        if status is not None:
            batch.provider_status = status.status
            batch.input_file_id = status.input_file_id
            batch.output_file_id = status.output_file_id or ""
            batch.error_file_id = status.error_file_id or ""
            batch.error = status.errors
        if results is None:
            if _out_of_time(batch):
                cancelled = _provider_cancel(source, batch) if status is None or not status.finished else ""
                _batch_give_up(batch, reason="", note=cancelled, polled=polled, enqueue_live=enqueue_live)
            else:
                batch.save()
                polled.again = True
            return polled
        _batch_collect(batch, source, results, polled=polled, enqueue_live=enqueue_live)
    return polled


def _out_of_time(batch: LLMBatch) -> bool:
    waited = timezone.now() - (batch.submitted_at or batch.created_at)
    return batch.polls >= batch_max_polls() or waited >= timedelta(hours=float(settings.LLM_BATCH_MAX_WAIT_HOURS))


def _results(source: LLMSourceConfig, batch: LLMBatch, status: BatchStatus) -> dict[str, ChatResult | LLMError]:
    waiting = LLMBatchItem.objects.filter(batch=batch, outcome=LLMBatchItemOutcome.WAITING).select_related("run")
    calls = {
        item.custom_id: BatchCall(
            run_id=item.run_id, prompt_version=_batch_prompt(batch, item.run.strategy).label, mode=item.pending["mode"]
        )
        for item in waiting.only("custom_id", "run_id", "pending", "run__strategy")
    }
    return batch_results(source=source, status=status, calls=calls)


def _batch_collect(
    batch: LLMBatch,
    source: LLMSourceConfig,
    results: dict[str, ChatResult | LLMError],
    *,
    polled: BatchPolled,
    enqueue_live: Callable[[Sequence[int]], object],
) -> None:
    unanswered: list[LLMBatchItem] = []
    items = LLMBatchItem.objects.filter(batch=batch, outcome=LLMBatchItemOutcome.WAITING).order_by("id")
    for item in items.select_related("run__recipe"):
        result = results.get(item.custom_id)
        if not isinstance(result, ChatResult):
            item.error_code = result.code if isinstance(result, LLMError) else BATCH_NO_ANSWER
            unanswered.append(item)
            continue
        _item_store(batch, item, source, result, polled=polled)
        item.save(update_fields=["outcome", "error_code"])
    batch.status, batch.finished_at = LLMBatchStatus.COLLECTED, timezone.now()
    batch.save()
    _requeue(batch, unanswered, polled=polled, enqueue_live=enqueue_live)
    logger.info(
        "Collected batch %s (%s): %d stored, %d failed, %d re-queued",
        batch.pk,
        batch.provider_status,
        len(polled.stored),
        len(polled.failed),
        len(unanswered),
    )


def _item_store(
    batch: LLMBatch, item: LLMBatchItem, source: LLMSourceConfig, result: ChatResult, *, polled: BatchPolled
) -> None:
    """Store the run of `item` from the batch's answer, as the worker stores a live run's."""
    run = item.run
    ours = TaggingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED, claimed_by=batch.claim)
    if not ours.exists():
        item.outcome = LLMBatchItemOutcome.SKIPPED
        return
    config = TaggingConfig.from_dict(run.config)
    prompt = _batch_prompt(batch, run.strategy)
    plan = hybrid_plan_load(item.pending["plan"]) if item.pending.get("plan") else None
    run.started_at = batch.submitted_at

    def tag(requests: Sequence[CategoryRequest]) -> tuple[object, dict[str, object]]:
        return run_tag_with_llm(
            run, config, requests, ask=lambda _question: result, plan=plan, prompt=prompt, source=source, cached=False
        )

    try:
        run_complete(run=run, config=config, ours=ours, tag=tag, record_inputs=False)  # type: ignore[arg-type]
    except Exception as exc:
        # Recorded on the run by run_complete, as the worker records it; the other runs are still collected.
        if not isinstance(exc, TaggingError):
            logger.exception("Unable to store run %s from batch %s", run.pk, batch.pk)
        item.outcome, item.error_code = LLMBatchItemOutcome.FAILED, getattr(exc, "code", "internal_error")
        polled.failed.append(run.pk)
        return
    item.outcome = LLMBatchItemOutcome.SUCCEEDED if run.status == RunStatus.SUCCEEDED else LLMBatchItemOutcome.SKIPPED
    if run.status == RunStatus.SUCCEEDED:
        polled.stored.append(run.pk)


def _requeue(
    batch: LLMBatch,
    items: Sequence[LLMBatchItem],
    *,
    polled: BatchPolled,
    enqueue_live: Callable[[Sequence[int]], object],
) -> None:
    """Runs of `batch` that got no usable answer: into the next round's batch while rounds are left, else live."""
    if not items:
        return
    LLMBatchItem.objects.bulk_update(
        [_with_outcome(item, LLMBatchItemOutcome.REQUEUED) for item in items], ["outcome", "error_code"]
    )
    run_ids = [item.run_id for item in items]
    held = TaggingRun.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED, claimed_by=batch.claim)
    run_ids = list(held.order_by("id").values_list("id", flat=True))
    if run_ids and batch.round < int(settings.LLM_BATCH_MAX_ROUNDS):
        try:
            polled.next_batch = llm_batch_submit(run_ids=run_ids, held_by=batch)
            return
        except TaggingError as exc:
            # The runs it did not take are released (BatchSubmitFailed) or still ours (refused before): live.
            logger.warning("Unable to put batch %s's unanswered runs in a new batch: %s", batch.pk, exc.message)
    _runs_live(run_ids, batch=batch, polled=polled, enqueue_live=enqueue_live)


def _with_outcome(item: LLMBatchItem, outcome: str) -> LLMBatchItem:
    item.outcome = outcome
    return item


def _runs_live(
    run_ids: Sequence[int], *, batch: LLMBatch, polled: BatchPolled, enqueue_live: Callable[[Sequence[int]], object]
) -> None:
    released = _runs_release(run_ids, batch=batch)
    # Runs a failed submission already released are unclaimed queued runs of these ids: live too.
    unclaimed = TaggingRun.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED, claimed_by="")
    ids = sorted(set(released) | set(unclaimed.values_list("id", flat=True)))
    polled.live.extend(ids)
    if ids:
        # After commit: if the broker refuses them now, their queued lease expires and the sweep sends them.
        transaction.on_commit(lambda: enqueue_live(ids))


def _provider_cancel(source: LLMSourceConfig, batch: LLMBatch) -> str:
    """Cancel a batch we stop waiting for at its provider (its runs go live, so whatever it still answered
    would be paid for twice); returns what happened, for the batch's error. A cancel that fails is logged;
    the runs go live anyway."""
    try:
        batch.provider_status = batch_cancel(source=source, batch_id=batch.provider_batch_id)
    except LLMError as exc:
        logger.warning("Could not cancel batch %s at its provider: %s", batch.pk, exc.message)
        return f" Cancelling it at the provider failed: {exc.message}"
    return f" It was cancelled at the provider ({batch.provider_status})."


def _batch_give_up(
    batch: LLMBatch,
    *,
    reason: str,
    polled: BatchPolled,
    enqueue_live: Callable[[Sequence[int]], object],
    note: str = "",
) -> None:
    """Stop waiting for `batch`: its unanswered runs go live."""
    waiting = LLMBatchItem.objects.filter(batch=batch, outcome=LLMBatchItemOutcome.WAITING)
    run_ids = list(waiting.order_by("id").values_list("run_id", flat=True))
    waiting.update(outcome=LLMBatchItemOutcome.REQUEUED, error_code=BATCH_GIVEN_UP)
    batch.status, batch.finished_at = LLMBatchStatus.GIVEN_UP, timezone.now()
    batch.error = (
        reason
        or (
            f"Not finished after {batch.polls} polls (LLM_BATCH_MAX_WAIT_HOURS={settings.LLM_BATCH_MAX_WAIT_HOURS}); "
            "its runs were sent live."
        )
        + note
    )
    batch.save()
    logger.warning("Gave up batch %s: %s", batch.pk, batch.error)
    _runs_live(run_ids, batch=batch, polled=polled, enqueue_live=enqueue_live)


# Longer than preparing any batch takes (each run tagged up to its question): a batch still unsubmitted then
# was left by a process that died preparing it.
BATCH_PREPARE_HOURS = 3


def llm_batches_overdue() -> list[tuple[int, int]]:
    """(id, polls) of batches whose next poll is late by two periods (its message was lost with a worker or
    the broker), or left unsubmitted for BATCH_PREPARE_HOURS: the sweep schedules a poll of each."""
    now = timezone.now()
    late = now - timedelta(seconds=3 * int(settings.LLM_BATCH_POLL_SECONDS))
    submitted = Q(submitted_at__lt=late) & ~Q(polled_at__gte=late)
    abandoned = Q(submitted_at__isnull=True, created_at__lt=now - timedelta(hours=BATCH_PREPARE_HOURS))
    batches = LLMBatch.objects.filter(submitted | abandoned, status=LLMBatchStatus.SUBMITTED)
    return list(batches.order_by("id").values_list("id", "polls"))
