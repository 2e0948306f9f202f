"""The tagging app's Celery tasks: entry points on the worker, one service call each.

Task names are the contract with messages already queued (and with beat schedules), so they stay put
when code moves.
"""

from __future__ import annotations

import logging

from celery import shared_task

from tagging.services.config import TaggingError
from tagging.services.runs import RUN_SOFT_TIME_LIMIT, RUN_TIME_LIMIT, run_execute

logger = logging.getLogger(__name__)


# No automatic retry: run_execute records any failure on the run (where the client polls for it) before
# re-raising, so a retry would find the run finished and do nothing. LLM calls retry inside the gateway.
@shared_task(
    name="tagging.run_execute",
    acks_late=True,
    soft_time_limit=RUN_SOFT_TIME_LIMIT,
    time_limit=RUN_TIME_LIMIT,
)
def run_execute_task(*, run_id: int) -> None:
    """Execute a queued tagging run. A run already finished is left as it is (safe to redeliver)."""
    try:
        run_execute(run_id=run_id)
    except TaggingError:
        # The failure is recorded on the run, where the client polls for it.
        logger.warning("Tagging run %s failed", run_id, exc_info=True)
