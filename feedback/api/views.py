"""POST /api/v1/recipes/import: labelled recipe datasets in, as JSON lines or JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied
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
from autotagger.permissions import CanImportRecipes, can_import_recipes
from feedback.api.serializers import (
    RecipeImportOptionsSerializer,
    RecipeImportReportSerializer,
    RecipeImportRequestSerializer,
)
from feedback.services.imports import recipes_import


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
