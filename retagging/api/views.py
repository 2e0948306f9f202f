"""The re-tagging API: list and create jobs, read one with its progress and summary, and apply, roll back or
cancel it. Staff only (the RetagJob model permissions); every action is one service call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from autotagger.api.schema import ErrorSerializer
from retagging.api.permissions import CanAddRetagJobs, CanChangeRetagJobs, CanReadRetagJobs
from retagging.api.serializers import RetagJobCreateSerializer, RetagJobSerializer
from retagging.dispatch import retag_job_create
from retagging.models import RetagJob
from retagging.selectors import retag_job_get, retag_jobs_list, retag_jobs_progress
from retagging.services.jobs import retag_job_apply, retag_job_cancel, retag_job_rollback

TAGS = ["re-tagging"]
FORBIDDEN = {403: OpenApiResponse(ErrorSerializer, description="Not staff with the re-tagging job permission")}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such re-tagging job")}
CONFLICT = {
    409: OpenApiResponse(
        ErrorSerializer, description="The job's state does not allow it (`retag_job_state`): still running, done twice"
    )
}
# An action takes no body, but a POST may still carry one over the size limit.
TOO_LARGE = {413: OpenApiResponse(ErrorSerializer, description="Body over the size limit")}
CREATE_EXAMPLE = OpenApiExample(
    "Stale recipes, dry run",
    value={"selection": {"kind": "stale"}, "strategy": "similarity", "config": {"k": 3}, "dry_run": True},
    request_only=True,
)


def _job_data(jobs: Sequence[RetagJob]) -> list[dict[str, Any]]:
    progress = retag_jobs_progress(job_ids=[job.pk for job in jobs])
    return list(RetagJobSerializer(jobs, many=True, context={"progress": progress}).data)


def _job_or_404(job_id: int) -> RetagJob:
    job = retag_job_get(job_id=job_id)
    if job is None:
        raise NotFound(f"No re-tagging job with id {job_id}.")
    return job


class RetagJobListView(APIView):
    permission_classes = [IsAuthenticated, CanAddRetagJobs]
    pagination_class = PageNumberPagination

    @extend_schema(
        operation_id="retag_jobs_list",
        summary="List re-tagging jobs",
        description="Newest first, 20 a page, each with its progress and (once ended) its summary.",
        responses={200: RetagJobSerializer(many=True), **FORBIDDEN},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(retag_jobs_list(), request, view=self)
        return paginator.get_paginated_response(_job_data(page or []))

    @extend_schema(
        operation_id="retag_jobs_create",
        summary="Re-tag recipes on the worker",
        description=(
            "Takes a snapshot of the recipes `selection` covers and re-tags them in chunks on the worker. A dry run "
            "(the default) stores a diff report to review and apply; otherwise each recipe's current tags move as "
            "it goes. 400 names what is wrong (unknown kind, category, tag, source or date, a bad config, nothing "
            "selected); 503 `broker_unavailable` when the task queue cannot be reached (the job is kept, failed)."
        ),
        request=RetagJobCreateSerializer,
        responses={202: RetagJobSerializer, **FORBIDDEN, 503: ErrorSerializer},
        examples=[CREATE_EXAMPLE],
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = RetagJobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = retag_job_create(
            selection=serializer.selection_data(),
            strategy=serializer.validated_data["strategy"],
            config=serializer.config_data(),
            dry_run=serializer.validated_data["dry_run"],
            use_batch=serializer.validated_data["use_batch"],
            user=request.user,
        )
        [data] = _job_data([job])
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/retag-jobs/{job.pk}"})


class RetagJobDetailView(APIView):
    permission_classes = [IsAuthenticated, CanReadRetagJobs]

    @extend_schema(
        operation_id="retag_jobs_retrieve",
        summary="Get a re-tagging job",
        description="Its progress (done, changed, unchanged, failed, skipped of total) and, once ended, its summary.",
        responses={200: RetagJobSerializer, **FORBIDDEN, **NOT_FOUND},
        tags=TAGS,
    )
    def get(self, request: Request, job_id: int) -> Response:
        [data] = _job_data([_job_or_404(job_id)])
        return Response(data)


def _action_view(*, name: str, summary: str, description: str, act: Callable[..., Any]) -> type[APIView]:
    class RetagJobActionView(APIView):
        permission_classes = [IsAuthenticated, CanChangeRetagJobs]

        @extend_schema(
            operation_id=f"retag_jobs_{name}",
            summary=summary,
            description=description,
            request=None,
            responses={200: RetagJobSerializer, **FORBIDDEN, **NOT_FOUND, **CONFLICT, **TOO_LARGE},
            tags=TAGS,
        )
        def post(self, request: Request, job_id: int) -> Response:
            job = _job_or_404(job_id)
            act(job=job, user=request.user)
            [data] = _job_data([_job_or_404(job_id)])
            return Response(data)

    RetagJobActionView.__name__ = RetagJobActionView.__qualname__ = f"RetagJob{name.title()}View"
    return RetagJobActionView


RetagJobApplyView = _action_view(
    name="apply",
    summary="Apply a finished dry run",
    description=(
        "Moves each recipe's current tags to the dry run's new run, where they are still what the dry run compared "
        "against (others are left and listed in `summary.apply`). 409 unless the job is a succeeded, unapplied dry run."
    ),
    act=retag_job_apply,
)
RetagJobRollbackView = _action_view(
    name="rollback",
    summary="Roll a job back",
    description=(
        "Points every recipe the job moved back at its previous run, where the job's run is still current "
        "(`summary.rollback`). 409 while the job runs, for a dry run never applied, or when already rolled back."
    ),
    act=retag_job_rollback,
)
RetagJobCancelView = _action_view(
    name="cancel",
    summary="Cancel a job",
    description="Stops a queued or running job: its pending recipes are skipped. 409 once it has ended.",
    act=retag_job_cancel,
)
