"""The re-tagging panel of the dashboard (registered from RetaggingConfig.ready through tagging.dashboard, which
knows nothing of this app): jobs in progress with a live bar, and the summaries of the latest that ended."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from retagging.api.permissions import can_read_retag_jobs
from retagging.selectors import retag_jobs_ended, retag_jobs_progress, retag_jobs_running

TEMPLATE_NAME = "retagging/includes/dashboard_panel.html"
RUNNING_SHOWN = 5
ENDED_SHOWN = 5


def retag_dashboard_context(request: HttpRequest) -> dict[str, Any] | None:
    """For staff who may see re-tagging jobs, when there is at least one; None otherwise (no panel)."""
    if not can_read_retag_jobs(getattr(request, "user", None)):
        return None
    running = list(retag_jobs_running(limit=RUNNING_SHOWN))
    ended = list(retag_jobs_ended(limit=ENDED_SHOWN))
    if not running and not ended:
        return None
    progress = retag_jobs_progress(job_ids=[job.pk for job in running])
    return {"running": [(job, progress[job.pk]) for job in running], "ended": ended}
