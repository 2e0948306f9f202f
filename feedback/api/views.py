"""POST /api/v1/recipes/import: labelled recipe datasets in, as JSON lines or JSON. POST /api/v1/runs/{id}/feedback:
an app's users' decisions on a run's tags. GET /api/v1/feedback: every decision, for reviewers and staff."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import json
from rest_framework.views import APIView

from autotagger.api.errors import PayloadTooLarge
from autotagger.api.parsers import json_loads_checked
from autotagger.api.query import query_validate
from autotagger.api.schema import ErrorSerializer
from autotagger.permissions import CanImportRecipes, CanReadAllFeedback, can_import_recipes
from feedback.api.serializers import (
    FeedbackItemSerializer,
    FeedbackListQuerySerializer,
    RecipeImportOptionsSerializer,
    RecipeImportReportSerializer,
    RecipeImportRequestSerializer,
    RunFeedbackRequestSerializer,
    RunFeedbackResultSerializer,
)
from feedback.selectors import FeedbackFilters, feedback_get_many, feedback_list, gold_labels_by_recipe
from feedback.services.client_feedback import NamedTagDecision, run_feedback_submit
from feedback.services.imports import recipes_import
from tagging.selectors import run_get


def import_max_bytes() -> int:
    return int(getattr(settings, "AUTOTAGGER_IMPORT_MAX_BYTES", 5 * 1024 * 1024))


def _body(stream: Any, parser_context: Mapping[str, Any] | None) -> bytes:
    """The raw body, refused with 413 past the import limit (checked on the declared and the read length)."""
    limit = import_max_bytes()
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is {int(declared)} bytes; the import limit is {limit} bytes.")
    body: bytes = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body is over the import limit of {limit} bytes.")
    return body


class ImportJSONParser(BaseParser):
    """JSON under the import limit rather than the API's general (much smaller) one.

    Not a JSONParser (nor a LimitedJSONParser): DRF reads `request.body` for those, which applies Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE (100 KB) before the parser is even called.
    """

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        body = _body(stream, parser_context)
        return json_loads_checked(body, encoding=(parser_context or {}).get("encoding", settings.DEFAULT_CHARSET))


@dataclass(frozen=True)
class JSONLines:
    lines: list[bytes]


class ImportJSONLinesParser(BaseParser):
    """One JSON object a line; the lines are checked one by one by the import, not here."""

    media_type = "application/x-ndjson"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        # Split on "\n" only: a JSON string may hold a raw U+2028, which str.splitlines() would split on.
        return JSONLines(lines=_body(stream, parser_context).split(b"\n"))


class ImportJSONLParser(ImportJSONLinesParser):
    media_type = "application/jsonl"


EXAMPLE_REQUEST = OpenApiExample(
    "Two labelled recipes",
    value={
        "recipes": [
            {
                "id": "catalogue-17",
                "title": "Spaghetti carbonara",
                "ingredients": ["200 g spaghetti", "100 g pancetta", "2 eggs", "50 g pecorino romano"],
                "instructions": "Boil the pasta. Fry the pancetta. Toss with eggs and cheese off the heat.",
                "tags": {"cuisine": ["Italian"], "dish_type": ["Pasta"]},
            },
            {"id": "catalogue-18", "title": "Tomato soup", "instructions": "Simmer tomatoes; blend."},
        ],
        "labeled": True,
        "create_taxonomy": False,
        "source": "catalogue",
        "map": {"dish_type": {"Pasta": "pasta"}},
    },
    request_only=True,
)

EXAMPLE_REPORT = OpenApiExample(
    "What was stored",
    value={
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "labels": 2,
        "categories_created": 0,
        "tags_created": 0,
        "errors": [{"line": 2, "message": "the recipe has no ingredients and no instructions"}],
        "unmapped": {"occasion": {"Sunday lunch": 1}},
    },
    response_only=True,
)


class RecipeImportView(APIView):
    # The permissions of the admin's import page, not `is_staff`.
    permission_classes = [IsAuthenticated, CanImportRecipes]
    parser_classes = [ImportJSONParser, ImportJSONLinesParser, ImportJSONLParser]

    @extend_schema(
        operation_id="recipes_import",
        summary="Import recipes, optionally with their tags as gold labels",
        description=(
            "The body is `application/x-ndjson` (or `application/jsonl`): one recipe object a line; or JSON: an "
            "object with `recipes` and the options, or a bare array of recipes. With a JSON-lines or array "
            "body, the options come from the query string. Recipes are matched on (`source`, `id`), so "
            "importing again updates them. A bad recipe is reported in `errors` and skipped; the others are "
            "stored. A `map` naming a tag that does not exist is refused (400) before anything is written. "
            "The body may be up to `AUTOTAGGER_IMPORT_MAX_BYTES` (5 MB by default). It needs the admin "
            "import's permissions: add and change recipes, add and delete gold labels; and, with "
            "`create_taxonomy`, add categories and tags."
        ),
        parameters=[
            OpenApiParameter("labeled", bool, description="JSON-lines or array body: store the tags as gold labels."),
            OpenApiParameter(
                "create_taxonomy", bool, description="JSON-lines or array body: create missing categories and tags."
            ),
            OpenApiParameter("source", str, description='JSON-lines or array body: the source name ("api").'),
        ],
        request={
            "application/json": RecipeImportRequestSerializer,
            "application/x-ndjson": OpenApiTypes.STR,
            "application/jsonl": OpenApiTypes.STR,
        },
        responses={
            200: RecipeImportReportSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Invalid options or mapping; nothing was stored"),
            401: OpenApiResponse(ErrorSerializer, description="No or invalid credentials"),
            403: OpenApiResponse(ErrorSerializer, description="Lacks the import (or taxonomy) permissions"),
            413: OpenApiResponse(ErrorSerializer, description="Body over the import size limit"),
            415: OpenApiResponse(ErrorSerializer, description="Neither JSON nor JSON lines"),
        },
        examples=[EXAMPLE_REQUEST, EXAMPLE_REPORT],
        tags=["recipes"],
    )
    def post(self, request: Request) -> Response:
        # Checked whatever the body: a bad option is refused even where the body's own options apply.
        options = query_validate(request=request, serializer_class=RecipeImportOptionsSerializer)
        data = request.data
        if isinstance(data, JSONLines | list):
            params = {**options, "map": None}
            lines: list[bytes] | list[str] = data.lines if isinstance(data, JSONLines) else _as_lines(data)
        else:
            serializer = RecipeImportRequestSerializer(data=data)
            serializer.is_valid(raise_exception=True)
            params = serializer.validated_data
            lines = _as_lines(params["recipes"])
        if params["create_taxonomy"] and not can_import_recipes(request.user, create_taxonomy=True):
            raise PermissionDenied("Creating categories and tags needs the permissions to add them.")
        report = recipes_import(
            lines=lines,
            source=params["source"],
            labeled=params["labeled"],
            create_taxonomy=params["create_taxonomy"],
            mapping=params["map"],
            user=request.user,
        )
        return Response(RecipeImportReportSerializer(report).data)


def _as_lines(recipes: list[Any]) -> list[str]:
    # Back to one line each, so that every recipe is checked the same way as a line of a file.
    return [json.dumps(recipe, ensure_ascii=False) for recipe in recipes]


FEEDBACK_EXAMPLE_REQUEST = OpenApiExample(
    "A user's opinion of three tags",
    value={
        "decisions": [
            {"category": "cuisine", "tag": "italian", "decision": "accept"},
            {"category": "dish_type", "tag": "soup", "decision": "reject"},
            {"category": "dish_type", "tag": "pasta", "decision": "add"},
        ]
    },
    request_only=True,
)
FEEDBACK_ITEM = {
    "id": 301,
    "recipe_id": 17,
    "run_id": 42,
    "category": "cuisine",
    "tag": "italian",
    "tag_name": "Italian",
    "decision": "accept",
    "channel": "api",
    "score": 0.97,
    "strategy": "llm",
    "prompt_version_id": 3,
    "prompt_version": "tagging-default v2",
    "reviewer": "shop-app",
    "created_at": "2026-11-29T12:00:00Z",
}
FEEDBACK_EXAMPLE_RESULT = OpenApiExample(
    "Recorded",
    value={
        "run_id": 42,
        "recipe_id": 17,
        "feedback": [FEEDBACK_ITEM],
        "gold_labels": {"cuisine": ["italian"], "dish_type": ["pasta"]},
    },
    response_only=True,
    status_codes=["201"],
)
FEEDBACK_EXAMPLE_LIST = OpenApiExample(
    "A page of feedback",
    value={"count": 1, "next": None, "previous": None, "results": [FEEDBACK_ITEM]},
    response_only=True,
)


class RunFeedbackView(APIView):
    @extend_schema(
        operation_id="runs_feedback_create",
        summary="Record people's decisions on a run's tags",
        description=(
            "For apps that collect their own users' opinion of the tags: accept or reject tags the run suggested, "
            "add active tags it missed, one decision per tag, each tag named by its category slug and its slug. "
            "Recorded as feedback (channel `api`, the caller as reviewer); the recipe's gold labels follow in the "
            "same transaction (accepted and added tags become labels, a rejected tag loses its label) and the "
            "learned tagger refits shortly after. Only the caller's own runs (others are 404); a recipe that "
            "curators (staff, reviewers) have labelled or reviewed is theirs to change: 403 `recipe_gold_labelled`. "
            "A run that has not succeeded: 409 `run_not_succeeded`. A tag the taxonomy lacks: 400 `unknown_tag`; "
            "a decision the run does not allow (accepting a tag it did not suggest, adding an inactive tag, two "
            "decisions on one tag): 400 `review_invalid`."
        ),
        request=RunFeedbackRequestSerializer,
        responses={
            201: RunFeedbackResultSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description="Invalid decisions (`invalid`, `unknown_tag`, `review_invalid`)"
            ),
            401: OpenApiResponse(ErrorSerializer, description="No or invalid credentials"),
            403: OpenApiResponse(
                ErrorSerializer, description="Curators have labelled the recipe (`recipe_gold_labelled`)"
            ),
            404: OpenApiResponse(ErrorSerializer, description="No such run, or not one of yours"),
            409: OpenApiResponse(ErrorSerializer, description="The run has not succeeded (`run_not_succeeded`)"),
        },
        examples=[FEEDBACK_EXAMPLE_REQUEST, FEEDBACK_EXAMPLE_RESULT],
        tags=["feedback"],
    )
    def post(self, request: Request, run_id: int) -> Response:
        run = run_get(run_id=run_id, user=request.user)
        if run is None:
            raise NotFound(f"No tagging run with id {run_id}.")
        serializer = RunFeedbackRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rows = run_feedback_submit(
            run=run,
            decisions=[NamedTagDecision(**item) for item in serializer.validated_data["decisions"]],
            user=request.user,
        )
        labels = gold_labels_by_recipe(recipe_ids=[run.recipe_id]).get(run.recipe_id, {})
        result = {
            "run_id": run.pk,
            "recipe_id": run.recipe_id,
            "feedback": feedback_get_many(ids=[row.pk for row in rows]),
            "gold_labels": {category: sorted(slugs) for category, slugs in sorted(labels.items())},
        }
        return Response(RunFeedbackResultSerializer(result).data, status=status.HTTP_201_CREATED)


class FeedbackListView(APIView):
    permission_classes = [IsAuthenticated, CanReadAllFeedback]
    # Tells drf-spectacular the list is paginated ({count, next, previous, results}).
    pagination_class = PageNumberPagination

    @extend_schema(
        operation_id="feedback_list",
        summary="List people's decisions on tags",
        description=(
            "Every decision recorded by the review screen and the API, newest first, 20 a page. For reviewers and "
            "for staff with the permission to view feedback; others get 403."
        ),
        parameters=[FeedbackListQuerySerializer],
        responses={
            200: FeedbackItemSerializer(many=True),
            403: OpenApiResponse(ErrorSerializer, description="Neither a reviewer nor staff who may view feedback"),
        },
        examples=[FEEDBACK_EXAMPLE_LIST],
        tags=["feedback"],
    )
    def get(self, request: Request) -> Response:
        query = query_validate(request=request, serializer_class=FeedbackListQuerySerializer)
        filters = FeedbackFilters(
            recipe_id=query.get("recipe"),
            run_id=query.get("run"),
            category=query.get("category"),
            tag=query.get("tag"),
            decision=query.get("decision"),
            channel=query.get("channel"),
            strategy=query.get("strategy"),
            prompt_version_id=query.get("prompt_version"),
            reviewer=query.get("reviewer"),
            since=query.get("since"),
            until=query.get("until"),
        )
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(feedback_list(filters=filters), request, view=self)
        return paginator.get_paginated_response(FeedbackItemSerializer(page, many=True).data)
