"""Request and response examples shown in the OpenAPI documentation."""

from drf_spectacular.utils import OpenApiExample

CARBONARA = {
    "title": "Spaghetti carbonara",
    "ingredients": ["200 g spaghetti", "100 g pancetta", "2 eggs", "50 g pecorino romano", "black pepper"],
    "instructions": "Boil the pasta. Fry the pancetta. Toss with eggs and cheese off the heat.",
}

TAG_REQUEST = OpenApiExample(
    "Tag a carbonara",
    value={**CARBONARA, "strategy": "similarity", "k": 2, "categories": ["cuisine", "dish_type"]},
    request_only=True,
)

RUN_RESPONSE = OpenApiExample(
    "Tags grouped by category",
    value={
        "id": 42,
        "recipe_id": 17,
        "strategy": "similarity",
        "status": "succeeded",
        "model": "all-MiniLM-L6-v2",
        "config": {"strategy": "similarity", "k": 2, "categories": ["cuisine", "dish_type"], "threshold": None},
        "timings": {"embed_ms": 14.2, "query_ms": 3.1, "score_ms": 0.9, "total_ms": 21.5},
        "error": "",
        "error_code": "",
        "created_at": "2026-11-26T12:00:00Z",
        "started_at": "2026-11-26T12:00:00Z",
        "finished_at": "2026-11-26T12:00:00Z",
        "categories": [
            {
                "slug": "cuisine",
                "name": "Cuisine",
                "tags": [
                    {
                        "slug": "italian",
                        "name": "Italian",
                        "score": 0.97,
                        "rank": 1,
                        "evidence": {
                            "decided_by": "learned",
                            "matched": {"title": ["italian"]},
                            "similarity": 0.4312,
                            "signals": {"neighbour_vote": 0.41, "text_model": 0.33, "zero_shot": 0.18, "prior": -0.08},
                            "neighbours": [
                                {"recipe_id": 311, "title": "Spaghetti carbonara"},
                                {"recipe_id": 95, "title": "Penne all'arrabbiata"},
                            ],
                            "rule": "no rule",
                        },
                    }
                ],
            },
            {
                "slug": "dish_type",
                "name": "Dish type",
                "tags": [
                    {
                        "slug": "pasta",
                        "name": "Pasta",
                        "score": 0.95,
                        "rank": 1,
                        "evidence": {
                            "decided_by": "zero_shot",
                            "matched": {"ingredients": ["pasta"]},
                            "similarity": 0.5123,
                            "rule": "no rule",
                        },
                    }
                ],
            },
        ],
    },
    response_only=True,
)

QUEUED_RESPONSE = OpenApiExample(
    "Queued on the worker",
    value={
        **RUN_RESPONSE.value,
        "status": "queued",
        "timings": {},
        "started_at": None,
        "finished_at": None,
        "categories": [],
    },
    response_only=True,
    status_codes=["202"],
)

ERROR_RESPONSE = OpenApiExample(
    "Unknown category",
    value={
        "error": {
            "code": "unknown_category",
            "message": "Unknown or inactive categories: spaceship.",
            "details": {"categories": ["spaceship"]},
        }
    },
    response_only=True,
    status_codes=["400"],
)

RECIPE_CREATE = OpenApiExample(
    "A recipe from your catalogue",
    value={**CARBONARA, "external_id": "sku-1234", "source": "catalogue"},
    request_only=True,
)

RECIPE_TAG_REQUEST = OpenApiExample(
    "Tag on the worker", value={"strategy": "similarity", "k": 3, "async": True}, request_only=True
)

JOB_REQUEST = OpenApiExample(
    "Tag every untagged recipe of a source with the hybrid strategy",
    value={"strategy": "hybrid", "k": 3, "filter": {"source": "catalogue", "untagged": True}},
    request_only=True,
)

JUDGE_REQUEST = OpenApiExample("Judge with a named source", value={"source": "gemma"}, request_only=True)

JUDGE_QUEUED = OpenApiExample(
    "The judge is queued",
    value={
        "run_id": 42,
        "source": "gemma",
        "status": "queued",
        "run_url": "/api/v1/runs/42",
        "page_url": "/runs/42/",
    },
    response_only=True,
    status_codes=["202"],
)

STALENESS_COUNTS = OpenApiExample(
    "After a tag was added to the taxonomy",
    value={
        "taxonomy_version": 4,
        "recipes": 1200,
        "stale": 1187,
        "causes": {"never_tagged": 12, "content": 3, "taxonomy": 1175, "prompt": 0, "model": 0, "tagger": 0},
    },
    response_only=True,
)
