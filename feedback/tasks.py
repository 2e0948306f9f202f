"""The feedback app's Celery tasks: entry points on the worker, one service call each.

Task names are the contract with messages already queued (and with beat schedules), so they stay put
when code moves: the refit task kept its name from when it lived in tagging.
"""

from __future__ import annotations

import math

from celery import Task, shared_task
from django.conf import settings

from feedback.evaluation.jobs import EvaluationJobBusy, evaluation_job_step
from feedback.training import tagger_refit
from prompts.gateway import llm_call_budget_seconds

# A chunk asks EVALUATION_LLM_CONCURRENCY recipes at a time, each call within its budget; two minutes
# more for embedding the chunk and storing the answers.
EVALUATION_STEP_SOFT_TIME_LIMIT = (
    math.ceil(settings.EVALUATION_CHUNK_SIZE / max(1, settings.EVALUATION_LLM_CONCURRENCY))
    * math.ceil(llm_call_budget_seconds())
    + 120
)


@shared_task(
    name="tagging.tagger_refit",
    acks_late=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=120,
    max_retries=3,
    soft_time_limit=1800,
    time_limit=2000,
    # Not given back when its worker dies: beat re-checks for a needed refit every hour, and a refit that
    # runs its worker out of memory must not be re-delivered for ever.
    reject_on_worker_lost=False,
)
def tagger_refit_task(*, requested_at: float | None = None) -> None:
    """Refit the learned tagger on the gold labels, unless superseded or already current."""
    tagger_refit(requested_at=requested_at)


@shared_task(
    name="feedback.evaluation_job_step",
    bind=True,
    acks_late=True,
    # A worker killed mid-chunk gives the message back: its re-delivery (same id) takes the chunk back at once
    # and resumes after the last stored answer; any other step takes it over once its lease runs out.
    reject_on_worker_lost=True,
    autoretry_for=(EvaluationJobBusy,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=30,
    soft_time_limit=EVALUATION_STEP_SOFT_TIME_LIMIT,
    time_limit=EVALUATION_STEP_SOFT_TIME_LIMIT + 60,
)
def evaluation_job_step_task(self: Task, *, job_id: int) -> None:
    """Answer a chunk of an evaluation job's recipes (whichever no live worker holds), then queue the next step
    while chunks remain; the step that finds every chunk done scores the job. Several steps of a job run at once
    (feedback.dispatch queues EVALUATION_PARALLEL_STEPS), on as many workers as take them."""
    if evaluation_job_step(job_id=job_id, token=self.request.id):
        self.apply_async(kwargs={"job_id": job_id})
