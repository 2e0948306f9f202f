"""Sending tagging to the worker: queue a run after commit, answer a client now, later or after a short
wait, and batch jobs of many recipes. The tasks it queues (tagging.tasks) run tagging.services."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from autotagger.embeddings import embedding_model_name
from autotagger.queue import BrokerUnavailable, task_enqueue
from tagging.models import LLMBatch, LLMBatchStatus, Recipe, RunStatus, TaggingJob, TaggingRun
from tagging.selectors import recipes_for_job
from tagging.services.batches import llm_batch_submit
from tagging.services.config import (
    TaggingConfig,
    TaggingError,
    category_requests,
    config_stored,
    tagging_config_validate,
    user_or_none,
)
from tagging.services.judging import judge_source_check, run_judgeable_check
from tagging.services.recipes import recipe_build
from tagging.services.runs import BROKER_UNAVAILABLE, recipe_tag, run_create
from tagging.tasks import job_dispatch_task, llm_batch_poll_later, run_execute_task, run_judge_task, runs_send

logger = logging.getLogger(__name__)


def recipe_tag_async(
    *, recipe: Recipe, config: TaggingConfig, user: AbstractBaseUser | AnonymousUser | None = None
) -> TaggingRun:
    """Queue tagging of `recipe` on the Celery worker; the run is `queued` until the worker takes it.

    Raises BrokerUnavailable (503) when the broker refuses the task: the run is then recorded as failed
    (`broker_unavailable`), never left queued."""
    with transaction.atomic():
        run = run_create(recipe=recipe, config=config, user=user)
        # Not robust: the broker's refusal must reach the caller, after the run is committed.
        transaction.on_commit(lambda: _run_enqueue(run))
    return run


def _run_enqueue(run: TaggingRun) -> None:
    try:
        task_enqueue(run_execute_task, run_id=run.pk)
    except BrokerUnavailable:
        logger.exception("Unable to queue tagging run %s", run.pk)
        run.status, run.error, run.error_code, run.finished_at = (
            RunStatus.FAILED,
            "The task queue was unavailable when the run was requested.",
            BROKER_UNAVAILABLE,
            timezone.now(),
        )
        TaggingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=run.status, error=run.error, error_code=run.error_code, finished_at=run.finished_at
        )
        raise


def recipe_tag_adhoc(
    *,
    title: str,
    ingredients: Sequence[str],
    instructions: str,
    config: TaggingConfig,
    user: AbstractBaseUser | AnonymousUser | None = None,
    wait: float = 0.0,
) -> TaggingRun:
    """Tag an ad-hoc recipe; the recipe is stored with its run. A config that cannot be served stores
    nothing. Strategies that use the LLM run on the worker (see recipe_tag_request)."""
    recipe = recipe_build(
        title=title,
        ingredients=ingredients,
        instructions=instructions,
        external_id=None,
        source="api",
        created_by=user,
    )
    if config.uses_llm:
        tagging_config_validate(config=config)
        recipe.save()
    return recipe_tag_request(recipe=recipe, config=config, user=user, run_async=False, wait=wait)


def recipe_tag_request(
    *,
    recipe: Recipe,
    config: TaggingConfig,
    user: AbstractBaseUser | AnonymousUser | None = None,
    run_async: bool,
    wait: float = 0.0,
) -> TaggingRun:
    """Tag as a client asked: in this process for similarity (unless `run_async`), on the worker for
    the strategies that use the LLM (they wait on a remote model), waiting up to `wait` seconds
    (bounded by TAGGING_MAX_WAIT_SECONDS) for the worker to finish."""
    if not config.uses_llm and not run_async:
        return recipe_tag(recipe=recipe, config=config, user=user)
    run = recipe_tag_async(recipe=recipe, config=config, user=user)
    if wait > 0:
        return run_wait(run_id=run.pk, seconds=wait)
    return run


RUN_WAIT_FIRST_POLL_SECONDS = 0.1
RUN_WAIT_MAX_POLL_SECONDS = 1.0


def run_wait(*, run_id: int, seconds: float) -> TaggingRun:
    """The run once it has finished, or as it is after `seconds` (at most TAGGING_MAX_WAIT_SECONDS).

    Polls quickly at first (a cached or quick run is answered at once), then backs off to one query a second.
    """
    deadline = time.monotonic() + min(max(seconds, 0.0), settings.TAGGING_MAX_WAIT_SECONDS)
    interval = RUN_WAIT_FIRST_POLL_SECONDS
    while True:
        run = TaggingRun.objects.get(pk=run_id)
        remaining = deadline - time.monotonic()
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) or remaining <= 0:
            return run
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, RUN_WAIT_MAX_POLL_SECONDS)


MAX_JOB_RECIPES = 10_000


class InvalidJob(TaggingError):
    code = "invalid_job"


def recipes_tag_job(
    *,
    recipe_ids: Sequence[int] | None,
    filters: dict[str, Any] | None,
    config: TaggingConfig,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> TaggingJob:
    """Tag many recipes on the worker: a job with one queued run per recipe, chosen by id or by filter
    (source, tag slug, untagged) among those `user` may tag (an id of any other is reported missing).
    Nothing is created if the selection or config is invalid."""
    requests = category_requests(config=config)
    if (recipe_ids is None) == (filters is None):
        raise InvalidJob("Give either recipe_ids or filter.", details={"recipe_ids": recipe_ids, "filter": filters})
    recipes = recipes_for_job(recipe_ids=recipe_ids, filters=filters, limit=MAX_JOB_RECIPES + 1, user=user)
    if recipe_ids is not None:
        missing = sorted(set(recipe_ids) - {r.pk for r in recipes})
        if missing:
            raise InvalidJob(f"No recipes with ids {missing[:20]}.", details={"recipe_ids": missing})
    if not recipes:
        raise InvalidJob("No recipe matches the selection.", details={"filter": filters})
    if len(recipes) > MAX_JOB_RECIPES:
        raise InvalidJob(
            f"A job tags at most {MAX_JOB_RECIPES} recipes; narrow the selection.", details={"limit": MAX_JOB_RECIPES}
        )
    stored_config = config_stored(config=config, requests=requests)
    with transaction.atomic():
        job = TaggingJob.objects.create(
            strategy=config.strategy,
            config=stored_config,
            selection={"recipe_ids": list(recipe_ids)} if recipe_ids is not None else {"filter": filters},
            total=len(recipes),
            created_by=user_or_none(user=user),
        )
        # Without a lease: the job's dispatch task gives each chunk of runs its lease as it queues it.
        TaggingRun.objects.bulk_create(
            [
                TaggingRun(
                    recipe=recipe,
                    job=job,
                    strategy=config.strategy,
                    config=stored_config,
                    embedding_model=embedding_model_name(mode=config.embedding),
                    status=RunStatus.QUEUED,
                    created_by=user_or_none(user=user),
                )
                for recipe in recipes
            ],
            batch_size=1000,
        )
        # One message, whatever the job's size: the worker queues the runs (a request never waits on thousands).
        transaction.on_commit(lambda: _job_enqueue(job))
    return job


def _job_enqueue(job: TaggingJob) -> None:
    try:
        task_enqueue(job_dispatch_task, job_id=job.pk)
    except BrokerUnavailable:
        # Nothing of the job reached the worker: undo it, so the 503 leaves nothing behind to sweep.
        logger.exception("Unable to queue tagging job %s; deleting it", job.pk)
        with transaction.atomic():
            TaggingRun.objects.filter(job=job).delete()
            job.delete()
        raise


def run_judge_request(*, run: TaggingRun, source: str | None = None) -> str:
    """Queue the LLM judge for `run`'s tags on the worker, asking `source` (None: the default), and return the
    source's name. Raises RunNotJudgeable (409) for a run that has not succeeded, JudgeSourceUnknown for a
    source that does not exist or cannot be asked, BrokerUnavailable (503) when the queue cannot be reached."""
    run_judgeable_check(run=run)
    name = judge_source_check(source=source)
    task_enqueue(run_judge_task, run_id=run.pk, source=name)
    return name


def runs_submit_batch(*, run_ids: Sequence[int]) -> LLMBatch:
    """Ask the model about queued llm/hybrid runs (of one source) through its Batch API at half price, instead
    of live; the batch is polled every LLM_BATCH_POLL_SECONDS from commit on, and its answers stored as live
    runs are (tagging.services.batches). Runs it answers without the model (the cache, hybrid's sure tags) are
    stored at once.

    Raises BatchUnsupported (the source has no Batch API) or BatchRunsInvalid before anything is stored, and
    BatchSubmitFailed when the provider does not take the batch (its runs are released): in each case send the
    runs still queued live (tagging.tasks.runs_send)."""
    batch = llm_batch_submit(run_ids=run_ids)
    if batch.status == LLMBatchStatus.SUBMITTED:
        transaction.on_commit(lambda: llm_batch_poll_later(batch.pk, after_polls=0))
    return batch


def runs_submit_batch_or_live(*, run_ids: Sequence[int]) -> LLMBatch | None:
    """`runs_submit_batch`, or, when the batch is refused or not taken (a source without the Batch API, the
    provider failing), the runs still queued and in no batch sent live (`runs_send`) and None. Raises
    BrokerUnavailable if the broker refuses them (their queued lease then lets the sweep send them)."""
    try:
        return runs_submit_batch(run_ids=run_ids)
    except TaggingError as exc:
        logger.warning("Runs sent live instead of through the Batch API: %s", exc.message)
    free = TaggingRun.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED, claimed_by="")
    runs_send(list(free.order_by("id").values_list("id", flat=True)))
    return None
