from __future__ import annotations

import logging

from celery import shared_task

from tagging.services import TaggingError, run_execute

logger = logging.getLogger(__name__)


@shared_task(
    name="tagging.run_execute",
    acks_late=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
    soft_time_limit=120,
    time_limit=180,
)
def run_execute_task(*, run_id: int) -> None:
    """Execute a queued tagging run. A run already finished is left as it is (safe to redeliver)."""
    try:
        run_execute(run_id=run_id)
    except TaggingError:
        # The failure is recorded on the run, where the client polls for it; nothing to retry.
        logger.warning("Tagging run %s failed", run_id, exc_info=True)


@shared_task(
    name="tagging.tagger_refit",
    acks_late=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=120,
    max_retries=3,
    soft_time_limit=1800,
    time_limit=2000,
)
def tagger_refit_task(*, requested_at: float | None = None) -> None:
    """Refit the learned tagger on the gold labels, unless superseded or already current."""
    from tagging.training import tagger_refit

    tagger_refit(requested_at=requested_at)
