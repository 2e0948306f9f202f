from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from autotagger.api.query import query_validate
from autotagger.api.schema import ErrorSerializer
from taxonomy.api.serializers import CategoryListQuerySerializer, CategoryOutputSerializer
from taxonomy.selectors import categories_list

CATEGORY_EXAMPLE = OpenApiExample(
    "A category with its tags",
    value={
        "id": 1,
        "slug": "cuisine",
        "name": "Cuisine",
        "description": "The culinary tradition a recipe comes from.",
        "default_max_tags": 2,
        "relevance_threshold": 0.75,
        "active": True,
        "position": 1,
        "tags": [
            {
                "id": 7,
                "slug": "italian",
                "name": "Italian",
                "description": "Pasta, risotto, pizza, olive oil, parmesan.",
                "synonyms": ["tuscan", "sicilian"],
                "active": True,
            }
        ],
    },
    response_only=True,
)


class CategoryListView(APIView):
    @extend_schema(
        operation_id="categories_list",
        summary="List categories with their tags",
        parameters=[CategoryListQuerySerializer],
        responses={200: CategoryOutputSerializer(many=True), 401: ErrorSerializer},
        examples=[CATEGORY_EXAMPLE],
        tags=["taxonomy"],
    )
    def get(self, request: Request) -> Response:
        query = query_validate(request=request, serializer_class=CategoryListQuerySerializer)
        categories = categories_list(active_only=query["active"])
        return Response(CategoryOutputSerializer(categories, many=True).data)


class CategoryDetailView(APIView):
    @extend_schema(
        operation_id="categories_retrieve",
        summary="Get a category with its tags",
        responses={
            200: CategoryOutputSerializer,
            401: ErrorSerializer,
            404: OpenApiResponse(ErrorSerializer, description="No such category"),
        },
        examples=[CATEGORY_EXAMPLE],
        tags=["taxonomy"],
    )
    def get(self, request: Request, slug: str) -> Response:
        category = categories_list().filter(slug=slug).first()
        if category is None:
            raise NotFound(f"No category with slug {slug!r}.")
        return Response(CategoryOutputSerializer(category).data)
