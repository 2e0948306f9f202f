"""Helpers for the tests of LLM and hybrid runs: queue and execute a run, and read back what it stored
and what it asked the model.

The runs are executed with `run_execute` (exactly what the worker's task does) because the test worker
is a separate process that the `settings` fixture cannot configure; the model behind them is a real
OpenAI-compatible HTTP server (prompts/tests/openai_server.py).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from autotagger.embeddings import embedding_model_name
from autotagger.recipe_text import RecipeText
from prompts.models import LLMSource
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.llama_server import LlamaServer
from tagging.dispatch import recipe_tag_async
from tagging.models import Recipe, TagAssignment, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.llm_runs import LLMFailed
from tagging.services.recipes import recipes_embed
from tagging.services.runs import run_execute
from tagging.services.tagger_state import learned_model_active
from tagging.taggers.base import CategoryRequest
from tagging.taggers.hybrid import HybridPlan, hybrid_plan
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Category, Tag


def run_queued(recipe: Recipe, **config: Any) -> TaggingRun:
    """A queued run (strategy "llm" unless `config` says otherwise), as the API creates it (in
    non-transactional tests nothing reaches the broker)."""
    return recipe_tag_async(recipe=recipe, config=TaggingConfig(**{"strategy": "llm", **config}))


def run_executed(run: TaggingRun) -> TaggingRun:
    run_execute(run_id=run.pk)
    return TaggingRun.objects.get(pk=run.pk)


def run_failed(run: TaggingRun) -> TaggingRun:
    with pytest.raises(LLMFailed):
        run_execute(run_id=run.pk)
    return TaggingRun.objects.get(pk=run.pk)


def tags_stored(run: TaggingRun) -> dict[str, list[tuple[str, float]]]:
    """Category slug -> [(tag slug, score)] in rank order, as stored for `run`."""
    stored: dict[str, list[tuple[str, float]]] = defaultdict(list)
    rows = (
        TagAssignment.objects.filter(run=run)
        .select_related("tag__category")
        .order_by("tag__category__position", "tag__category_id", "rank", "id")
    )
    for assignment in rows:
        stored[assignment.tag.category.slug].append((assignment.tag.slug, assignment.score))
    return dict(stored)


def slugs_offered(request: dict[str, Any]) -> dict[str, list[str]]:
    """Category slug -> the slugs the request's strict schema allows."""
    schema = request["response_format"]["json_schema"]["schema"]
    return {slug: spec["items"]["properties"]["tag"]["enum"] for slug, spec in schema["properties"].items()}


def user_prompt(request: dict[str, Any]) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def active_slugs(category_slug: str) -> set[str]:
    return set(Tag.objects.filter(category__slug=category_slug, active=True).values_list("slug", flat=True))


def tokens_spelling(text: str, logprobs: dict[str, float]) -> list[tuple[str, float]]:
    """Tokens that spell `text` exactly: each slug of `logprobs` one token with its log-probability,
    everything between them certain (log-probability 0)."""
    pattern = "(" + "|".join(re.escape(slug) for slug in logprobs) + ")"
    return [(part, logprobs.get(part, 0.0)) for part in re.split(pattern, text) if part]


def plan_of(recipe: Recipe, categories: tuple[str, ...], k: int) -> HybridPlan:
    """What hybrid_plan decides for `recipe`, from the similarity scores the hybrid tagger sees."""
    recipes_embed(recipes=[recipe])
    by_slug = {c.slug: c for c in Category.objects.filter(slug__in=categories)}
    requests = [CategoryRequest(category=by_slug[slug], k=k, threshold=0.5) for slug in categories]
    scored = SimilarityTagger(model=embedding_model_name(), learned=learned_model_active()).score_all(
        recipe=RecipeText(title=recipe.title, ingredients=recipe.ingredients, instructions=recipe.instructions),
        embedding=np.asarray(recipe.embedding),
        requests=requests,
    )
    return hybrid_plan(scored=scored, requests=requests)


def llama_source_create(settings: Any, server: LlamaServer, *, name: str, **fields: Any) -> LLMSource:
    """A source at the real llama.cpp server, one request at a time, with one quick retry: a tiny model on a
    busy machine is slow, and a failing call should fail the test rather than wait through backoffs."""
    settings.LLM_MAX_RETRIES = 1
    settings.LLM_RETRY_BASE_SECONDS = 0.01
    settings.LLM_RETRY_MAX_SECONDS = 0.05
    settings.LLM_SLOT_WAIT_SECONDS = 5.0
    settings.LLM_DAILY_SPEND_CAP = 0.0
    values = {"timeout_seconds": 120, "max_concurrency": 1, "price_input_per_1k": 0.5, "price_output_per_1k": 1.5}
    source: LLMSource = LLMSourceFactory.create(
        name=name, base_url=server.url, model=server.model, **{**values, **fields}
    )
    return source
