"""The feedback app's Celery tasks: entry points on the worker, one service call each.

Task names are the contract with messages already queued (and with beat schedules), so they stay put
when code moves: the refit task kept its name from when it lived in tagging.
"""

from __future__ import annotations

from celery import shared_task

from feedback.training import tagger_refit


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
    tagger_refit(requested_at=requested_at)
