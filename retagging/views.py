"""Staff pages of re-tagging jobs: the list, the form that starts one, a job's diff report with its actions,
and the progress JSON the pages' bars (and the dashboard's) poll."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from autotagger.errors import DomainError
from retagging.dispatch import retag_job_create
from retagging.forms import RetagJobForm
from retagging.models import RetagJob
from retagging.selectors import (
    retag_job_changed_items,
    retag_job_failed_items,
    retag_job_get,
    retag_job_progress,
    retag_job_tag_totals,
    retag_jobs_progress,
    retag_jobs_recent,
)
from retagging.services.jobs import retag_job_apply, retag_job_cancel, retag_job_rollback

View = Callable[..., HttpResponse]
VIEW_PERMISSION, CHANGE_PERMISSION = "retagging.view_retagjob", "retagging.change_retagjob"
RECIPES_PER_PAGE = 50
MOVERS_SHOWN = 20


def permission_required(permission: str) -> Callable[[View], View]:
    """Anonymous users go to the login page; signed-in users without `permission` get 403."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(permission):
                raise PermissionDenied("Re-tagging jobs are for staff with the re-tagging permissions.")
            return view(request, *args, **kwargs)

        return login_required(wrapper)

    return decorator


@permission_required(VIEW_PERMISSION)
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    recent = list(retag_jobs_recent(limit=50))
    progress = retag_jobs_progress(job_ids=[job.pk for job in recent])
    jobs = [(job, progress[job.pk]) for job in recent]
    return render(
        request,
        "retagging/job_list.html",
        {"jobs": jobs, "may_act": request.user.has_perm(CHANGE_PERMISSION)},
    )


@permission_required(CHANGE_PERMISSION)
@require_http_methods(["GET", "POST"])
def job_new(request: HttpRequest) -> HttpResponse:
    status = 200
    if request.method == "POST":
        form = RetagJobForm(request.POST)
        if form.is_valid():
            try:
                job = retag_job_create(**form.job_arguments(), user=request.user)
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Job {job.pk} started: {job.total} recipes.")
                return redirect("retagging:detail", job_id=job.pk)
        status = 400
    else:
        form = RetagJobForm()
    return render(request, "retagging/job_new.html", {"form": form}, status=status)


@permission_required(VIEW_PERMISSION)
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = retag_job_get(job_id=job_id)
    if job is None:
        raise Http404("No such re-tagging job.")
    totals = retag_job_tag_totals(job=job)
    page = Paginator(retag_job_changed_items(job=job), RECIPES_PER_PAGE).get_page(request.GET.get("page"))
    may_act = request.user.has_perm(CHANGE_PERMISSION)
    context = {
        "job": job,
        "progress": retag_job_progress(job=job),
        "movers": totals[:MOVERS_SHOWN],
        "tags_changed": len(totals),
        "page": page,
        "failed": retag_job_failed_items(job=job),
        "may_apply": may_act and job.dry_run and job.status == "succeeded" and job.applied_at is None,
        "may_rollback": may_act
        and job.finished
        and job.rolled_back_at is None
        and (not job.dry_run or job.applied_at is not None),
        "may_cancel": may_act and not job.finished,
    }
    return render(request, "retagging/job_detail.html", context)


ACTIONS = {"apply": retag_job_apply, "rollback": retag_job_rollback, "cancel": retag_job_cancel}
DONE = {"apply": "Applied", "rollback": "Rolled back", "cancel": "Cancelled"}


@permission_required(CHANGE_PERMISSION)
@require_POST
def job_action(request: HttpRequest, job_id: int, action: str) -> HttpResponse:
    job = get_object_or_404(RetagJob, pk=job_id)
    if action not in ACTIONS:
        return HttpResponse(f"Unknown action {action!r}.", status=404)
    if request.POST.get("confirm") != "yes":
        messages.error(request, f"Tick the box to confirm before you {action} job {job.pk}.")
        return redirect("retagging:detail", job_id=job.pk)
    try:
        result = ACTIONS[action](job=job, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("retagging:detail", job_id=job.pk)
    moved = getattr(result, "moved", None)
    left = getattr(result, "left", [])
    detail = f": {moved} recipes moved" if moved is not None else ""
    if left:
        detail += f", {len(left)} left as they were (their tags changed since)"
    messages.success(request, f"{DONE[action]} job {job.pk}{detail}.")
    return redirect(reverse("retagging:detail", kwargs={"job_id": job.pk}))


@permission_required(VIEW_PERMISSION)
@require_GET
def job_progress_json(request: HttpRequest, job_id: int) -> JsonResponse:
    """What progress bars poll: the counters, the status, and the summary once finished."""
    job = get_object_or_404(RetagJob, pk=job_id)
    progress = retag_job_progress(job=job)
    return JsonResponse(
        {
            "id": job.pk,
            "status": job.status,
            "dry_run": job.dry_run,
            **progress.as_dict(),
            "error": job.error,
            "summary": job.summary or None,
            "url": reverse("retagging:detail", kwargs={"job_id": job.pk}),
        }
    )
