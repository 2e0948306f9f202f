from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from autotagger.api.query import query_validate
from autotagger.api.schema import ErrorSerializer
from autotagger.permissions import IsOwnerOrHasModelPermission, can_ask_judge
from tagging.api import examples
from tagging.api.serializers import (
    JobRequestSerializer,
    RecipeCreateSerializer,
    RecipeListItemSerializer,
    RecipeListQuerySerializer,
    RecipeSerializer,
    RecipeTagRequestSerializer,
    RecipeUpdateSerializer,
    RunJudgeQueuedSerializer,
    RunJudgeRequestSerializer,
    StalenessCountsSerializer,
    TaggingJobSerializer,
    TaggingRunSerializer,
    TagRequestSerializer,
)
from tagging.dispatch import recipe_tag_adhoc, recipe_tag_request, recipes_tag_job, run_judge_request
from tagging.models import Recipe, RunStatus, TaggingJob, TaggingRun
from tagging.selectors import (
    job_get,
    job_progress,
    recipe_get,
    recipe_latest_run,
    recipes_list,
    recipes_visible,
    run_get,
    staleness_counts,
)
from tagging.services.recipes import recipe_create, recipe_delete, recipe_update
from tagging.staleness import STALE_CAUSES
from taxonomy.selectors import taxonomy_version_current

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input", examples=[examples.ERROR_RESPONSE]),
    401: OpenApiResponse(ErrorSerializer, description="No or invalid credentials"),
    413: OpenApiResponse(ErrorSerializer, description="Body over the size limit"),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such object, or not one of yours")}
FORBIDDEN = {
    403: OpenApiResponse(
        ErrorSerializer,
        description="You may read it but not change it (`permission_denied`), or it has gold labels, which only "
        "staff and reviewers change (`recipe_gold_labelled`)",
    )
}


def _run_answer(run: TaggingRun, request: Request) -> Response:
    """200 with a finished run; 202 with a run still queued or running, to poll at its Location."""
    finished = run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    data = TaggingRunSerializer(run_get(run_id=run.pk, user=request.user)).data
    if finished:
        return Response(data)
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/runs/{run.pk}"})


class TagView(APIView):
    @extend_schema(
        operation_id="tag_recipe",
        summary="Tag an ad-hoc recipe",
        description=(
            "Stores the recipe and a tagging run, and returns up to `k` relevant tags per category. "
            "`similarity` answers at once (200). `llm` and `hybrid` run on the worker: 202 with the queued "
            "run (poll `GET /api/v1/runs/{id}`), or 200 once finished if `wait` (seconds) is given and "
            "the run finishes within it."
        ),
        request=TagRequestSerializer,
        responses={200: TaggingRunSerializer, 202: TaggingRunSerializer, **ERRORS, 503: ErrorSerializer},
        examples=[examples.TAG_REQUEST, examples.RUN_RESPONSE],
        tags=["tagging"],
    )
    def post(self, request: Request) -> Response:
        serializer = TagRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        run = recipe_tag_adhoc(
            title=data["title"],
            ingredients=data["ingredients"],
            instructions=data["instructions"],
            config=serializer.to_config(),
            user=request.user,
            wait=data.get("wait") or 0.0,
        )
        return _run_answer(run, request)


class RecipeListView(APIView):
    # Tells drf-spectacular the list is paginated ({count, next, previous, results}).
    pagination_class = PageNumberPagination

    @extend_schema(
        operation_id="recipes_list",
        summary="List recipes",
        parameters=[RecipeListQuerySerializer],
        responses={200: RecipeListItemSerializer(many=True), **ERRORS},
        tags=["recipes"],
    )
    def get(self, request: Request) -> Response:
        query = query_validate(request=request, serializer_class=RecipeListQuerySerializer)
        paginator = PageNumberPagination()
        recipes = recipes_list(
            user=request.user,
            tag_slug=request.query_params.get("tag") or None,
            category_slug=request.query_params.get("category") or None,
            stale=query.get("stale"),
            stale_causes=query.get("stale_cause"),
        )
        page = paginator.paginate_queryset(recipes, request, view=self)
        return paginator.get_paginated_response(RecipeListItemSerializer(page, many=True).data)

    @extend_schema(
        operation_id="recipes_create",
        summary="Create a recipe",
        request=RecipeCreateSerializer,
        responses={201: RecipeSerializer, **ERRORS},
        examples=[examples.RECIPE_CREATE],
        tags=["recipes"],
    )
    def post(self, request: Request) -> Response:
        serializer = RecipeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        recipe = recipe_create(**serializer.validated_data, created_by=request.user)
        return Response(RecipeSerializer(recipe).data, status=status.HTTP_201_CREATED)


class RecipeStalenessView(APIView):
    @extend_schema(
        operation_id="recipes_staleness",
        summary="Count the recipes whose current tags are stale, per cause",
        description="Among the recipes you may read: how many are stale for each cause (never tagged, recipe "
        "edited, taxonomy changed, prompt changed, model changed, tagger retrained), and how many for any.",
        responses={200: StalenessCountsSerializer, **ERRORS},
        examples=[examples.STALENESS_COUNTS],
        tags=["recipes"],
    )
    def get(self, request: Request) -> Response:
        counts = staleness_counts(recipes=recipes_visible(user=request.user))
        data = {
            "taxonomy_version": taxonomy_version_current(),
            "recipes": counts["recipes"],
            "stale": counts["stale"],
            "causes": {cause: counts[cause] for cause in STALE_CAUSES},
        }
        return Response(StalenessCountsSerializer(data).data)


def _recipe(view: APIView, request: Request, recipe_id: int) -> Recipe:
    """The recipe if the caller may read it (else 404) and do what the request asks of it (else 403)."""
    recipe = recipe_get(recipe_id=recipe_id, user=request.user)
    if recipe is None:
        raise NotFound(f"No recipe with id {recipe_id}.")
    view.check_object_permissions(request, recipe)
    return recipe


class RecipeDetailView(APIView):
    permission_classes = [IsAuthenticated, IsOwnerOrHasModelPermission]

    @extend_schema(
        operation_id="recipes_retrieve",
        summary="Get a recipe with its latest tags",
        responses={200: RecipeSerializer, **ERRORS, **NOT_FOUND},
        tags=["recipes"],
    )
    def get(self, request: Request, recipe_id: int) -> Response:
        recipe = _recipe(self, request, recipe_id)
        return Response(RecipeSerializer(recipe, context={"latest_run": recipe_latest_run(recipe=recipe)}).data)

    @extend_schema(
        operation_id="recipes_update",
        summary="Replace a recipe",
        request=RecipeCreateSerializer,
        responses={200: RecipeSerializer, **ERRORS, **FORBIDDEN, **NOT_FOUND},
        examples=[examples.RECIPE_CREATE],
        tags=["recipes"],
    )
    def put(self, request: Request, recipe_id: int) -> Response:
        return self._update(request, recipe_id, serializer_class=RecipeCreateSerializer)

    @extend_schema(
        operation_id="recipes_partial_update",
        summary="Change some of a recipe's fields",
        request=RecipeUpdateSerializer,
        responses={200: RecipeSerializer, **ERRORS, **FORBIDDEN, **NOT_FOUND},
        examples=[examples.RECIPE_CREATE],
        tags=["recipes"],
    )
    def patch(self, request: Request, recipe_id: int) -> Response:
        return self._update(request, recipe_id)

    def _update(
        self,
        request: Request,
        recipe_id: int,
        serializer_class: type[RecipeUpdateSerializer | RecipeCreateSerializer] = RecipeUpdateSerializer,
    ) -> Response:
        recipe = _recipe(self, request, recipe_id)
        # PUT replaces the whole recipe (omitted optional fields take their defaults); PATCH changes some.
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        recipe = recipe_update(recipe=recipe, data=serializer.validated_data, actor=request.user)
        return Response(RecipeSerializer(recipe, context={"latest_run": recipe_latest_run(recipe=recipe)}).data)

    @extend_schema(
        operation_id="recipes_destroy",
        summary="Delete a recipe and its tagging runs",
        description="A recipe with gold labels is not deleted: 403 for an API client, 409 for staff and reviewers.",
        responses={
            204: None,
            **ERRORS,
            **FORBIDDEN,
            **NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="It has gold labels (`recipe_has_gold_labels`)"),
        },
        tags=["recipes"],
    )
    def delete(self, request: Request, recipe_id: int) -> Response:
        recipe_delete(recipe=_recipe(self, request, recipe_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecipeTagView(APIView):
    permission_classes = [IsAuthenticated, IsOwnerOrHasModelPermission]

    @extend_schema(
        operation_id="recipes_tag",
        summary="Tag a stored recipe",
        description=(
            'Runs tagging now (200 with the finished run) or, with `"async": true`, on the Celery worker '
            "(202 with the queued run; poll `GET /api/v1/runs/{id}`)."
        ),
        request=RecipeTagRequestSerializer,
        responses={
            200: TaggingRunSerializer,
            202: TaggingRunSerializer,
            **ERRORS,
            403: OpenApiResponse(ErrorSerializer, description="You may read the recipe but not tag it"),
            **NOT_FOUND,
            503: ErrorSerializer,
        },
        examples=[examples.RECIPE_TAG_REQUEST, examples.RUN_RESPONSE, examples.QUEUED_RESPONSE],
        tags=["recipes"],
    )
    def post(self, request: Request, recipe_id: int) -> Response:
        recipe = _recipe(self, request, recipe_id)
        serializer = RecipeTagRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = recipe_tag_request(
            recipe=recipe,
            config=serializer.to_config(),
            user=request.user,
            run_async=serializer.validated_data["async"],
            wait=serializer.validated_data.get("wait") or 0.0,
        )
        return _run_answer(run, request)


class RunDetailView(APIView):
    @extend_schema(
        operation_id="runs_retrieve",
        summary="Get a tagging run",
        description="Poll this after an asynchronous request: `status` goes queued → running → succeeded or failed.",
        responses={200: TaggingRunSerializer, **ERRORS, **NOT_FOUND},
        examples=[examples.RUN_RESPONSE],
        tags=["tagging"],
    )
    def get(self, request: Request, run_id: int) -> Response:
        run = run_get(run_id=run_id, user=request.user)
        if run is None:
            raise NotFound(f"No tagging run with id {run_id}.")
        return Response(TaggingRunSerializer(run).data)


class RunJudgeView(APIView):
    @extend_schema(
        operation_id="runs_judge",
        summary="Ask the LLM judge about a run's tags",
        description=(
            "Queues the LLM judge on the worker: it rates each tag of the run relevant, partly or not relevant, "
            "with a short reason. 202 with where to look: the run's `judgements` (per tag) fill in once it "
            "answered. Needs the permission to add verdicts (403 otherwise); 409 `run_not_succeeded` for a run "
            "without tags yet; 400 `llm_not_configured` for a source that does not exist or cannot be asked."
        ),
        request=RunJudgeRequestSerializer,
        responses={
            202: RunJudgeQueuedSerializer,
            **ERRORS,
            403: OpenApiResponse(ErrorSerializer, description="You may read the run but not ask for verdicts"),
            **NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="The run has not succeeded (`run_not_succeeded`)"),
            503: ErrorSerializer,
        },
        examples=[examples.JUDGE_REQUEST, examples.JUDGE_QUEUED],
        tags=["tagging"],
    )
    def post(self, request: Request, run_id: int) -> Response:
        run = run_get(run_id=run_id, user=request.user)
        if run is None:
            raise NotFound(f"No tagging run with id {run_id}.")
        if not can_ask_judge(request.user):
            raise PermissionDenied("Asking the LLM judge needs the permission to add tag judgements.")
        serializer = RunJudgeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        source = run_judge_request(run=run, source=serializer.validated_data.get("source"))
        data = RunJudgeQueuedSerializer(
            {
                "run_id": run.pk,
                "source": source,
                "status": "queued",
                "run_url": f"/api/v1/runs/{run.pk}",
                "page_url": reverse("dashboard:run-detail", kwargs={"run_id": run.pk}),
            }
        ).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/runs/{run.pk}"})


def _job_data(job: TaggingJob) -> dict[str, object]:
    progress = job_progress(job=job)
    return TaggingJobSerializer(
        {
            "id": job.pk,
            "strategy": job.strategy,
            "config": job.config,
            "selection": job.selection,
            "total": progress.total,
            "done": progress.done,
            "failed": progress.failed,
            "pending": progress.pending,
            "percent": progress.percent,
            "status": "finished" if progress.finished else "running",
            "created_at": job.created_at,
        }
    ).data


class RecipesTagJobView(APIView):
    @extend_schema(
        operation_id="recipes_tag_batch",
        summary="Tag many recipes on the worker",
        description=(
            "Creates a job with one run per recipe (by `recipe_ids`, or by `filter`: `source`, `tag`, "
            "`untagged`), executed on the Celery worker. Poll `GET /api/v1/jobs/{id}` for done/failed/total. "
            "503 `broker_unavailable` (nothing is kept) when the task queue cannot be reached."
        ),
        request=JobRequestSerializer,
        responses={202: TaggingJobSerializer, **ERRORS, 503: ErrorSerializer},
        examples=[examples.JOB_REQUEST],
        tags=["tagging"],
    )
    def post(self, request: Request) -> Response:
        serializer = JobRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = recipes_tag_job(
            recipe_ids=data.get("recipe_ids"),
            filters=dict(data["filter"]) if "filter" in data else None,
            config=serializer.to_config(),
            user=request.user,
        )
        return Response(_job_data(job), status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/jobs/{job.pk}"})


class JobDetailView(APIView):
    @extend_schema(
        operation_id="jobs_retrieve",
        summary="Get a tagging job's progress",
        responses={200: TaggingJobSerializer, **ERRORS, **NOT_FOUND},
        tags=["tagging"],
    )
    def get(self, request: Request, job_id: int) -> Response:
        job = job_get(job_id=job_id, user=request.user)
        if job is None:
            raise NotFound(f"No tagging job with id {job_id}.")
        return Response(_job_data(job))
