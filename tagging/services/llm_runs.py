"""The strategies that ask a language model (llm, hybrid), on the worker: the cache of earlier answers to the
same question, the call, and what it used and cost."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.conf import settings

from autotagger.embeddings import embedding_model_name
from prompts.rendering import PROMPT_VERSION
from prompts.selectors import llm_usage_of_run
from prompts.sources import LLMError
from tagging.models import Recipe, RunStatus, Strategy, TaggerState, TaggingRun
from tagging.services.config import TaggingConfig, TaggingError, llm_source_resolve
from tagging.services.recipes import recipe_embed_for_tagging
from tagging.services.tagger_state import learned_model_active
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from tagging.taggers.hybrid import HybridTagger
from tagging.taggers.llm import LLMTagger
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Category, Tag

logger = logging.getLogger(__name__)


class LLMFailed(TaggingError):
    """The language model could not give a usable answer (after the bounded retries)."""

    code = "llm_failed"
    status = 502


def _taxonomy_version(requests: Sequence[CategoryRequest]) -> str:
    """Changes whenever a category the requests cover or a tag they could return is edited, added,
    (de)activated or removed: everything the prompt shows of the taxonomy."""
    category_ids = [r.category.pk for r in requests]
    categories = Category.objects.filter(pk__in=category_ids).order_by("id").values_list("id", "updated_at")
    tags = Tag.objects.filter(category_id__in=category_ids).order_by("id").values_list("id", "updated_at", "active")
    return hashlib.sha256(repr((list(categories), list(tags))).encode()).hexdigest()


def _llm_cache_key(recipe: Recipe, config: TaggingConfig, requests: Sequence[CategoryRequest], source: Any) -> str:
    parts = {
        "content": recipe.content_hash,
        "prompt": PROMPT_VERSION,
        "taxonomy": _taxonomy_version(requests),
        "model": f"{source.base_url}|{source.model}",
        "strategy": config.strategy,
        "k": {r.category.slug: r.k for r in requests},
        "threshold": config.threshold,
        # Hybrid's shortlist also depends on the similarity tagger: its model and what it learned.
        "hybrid": [
            settings.HYBRID_ACCEPT,
            settings.HYBRID_FLOOR,
            embedding_model_name(),
            TaggerState.objects.filter(active=True).values_list("id", flat=True).first(),
        ]
        if config.strategy == Strategy.HYBRID
        else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _llm_cached(key: str, run: TaggingRun, requests: Sequence[CategoryRequest]) -> TaggerOutput | None:
    """The tags of an earlier successful run with the same cache key: same recipe content, prompt
    version, taxonomy version, model and settings, so the LLM would be asked the same question."""
    earlier = (
        TaggingRun.objects.filter(status=RunStatus.SUCCEEDED, stats__cache_key=key)
        .exclude(pk=run.pk)
        .order_by("-id")
        .first()
    )
    if earlier is None:
        return None
    output = TaggerOutput(tags={r.category.pk: [] for r in requests})
    for assignment in earlier.assignments.select_related("tag").order_by("rank", "id"):
        if assignment.tag.category_id in output.tags:
            output.tags[assignment.tag.category_id].append(
                ScoredTag(
                    tag_id=assignment.tag_id, slug=assignment.tag.slug, name=assignment.tag.name, score=assignment.score
                )
            )
    return output


def run_tag_with_llm(
    run: TaggingRun, config: TaggingConfig, requests: Sequence[CategoryRequest]
) -> tuple[TaggerOutput, dict[str, Any]]:
    """Tag with the llm or hybrid strategy (on the worker: this waits on the model). Raises TaggingError."""
    started = time.perf_counter()
    source = llm_source_resolve(config=config)
    recipe = run.recipe
    key = _llm_cache_key(recipe, config, requests, source)
    described = {"cache_key": key, "prompt_version": PROMPT_VERSION, "source": source.name, "llm_model": source.model}
    cached = _llm_cached(key, run, requests)
    if cached is not None:
        cached.timings_ms = {"total_ms": round((time.perf_counter() - started) * 1000, 2)}
        return cached, {**described, "cache_hit": True, "llm_calls": 0}
    try:
        if config.strategy == Strategy.HYBRID:
            recipe_embed_for_tagging(recipe=recipe, requests=requests)
            similarity = SimilarityTagger(model=embedding_model_name(), learned=learned_model_active())
            output, stats = HybridTagger(similarity=similarity, source=source).tag(
                recipe=recipe.text, embedding=np.asarray(recipe.embedding), requests=requests, run_id=run.pk
            )
        else:
            output, stats = LLMTagger(source=source).tag(recipe=recipe.text, requests=requests, run_id=run.pk)
    except LLMError as exc:
        raise LLMFailed(exc.message, details={"llm_error": exc.code}) from exc
    output.timings_ms["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    usage = llm_usage_of_run(run_id=run.pk)
    return output, {**described, **stats.as_dict(), **usage, "cache_hit": False}
