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
from autotagger.recipe_text import RecipeText
from prompts.rendering import RECIPE_CUT, FewShotExample, PromptTemplates
from prompts.selectors import llm_usage_of_run
from prompts.sources import LLMError, LLMSourceConfig
from tagging.models import RunStatus, Strategy, TaggerState, TaggingRun
from tagging.selectors import tagging_prompt_active
from tagging.services.config import TaggingConfig, TaggingError, llm_source_resolve
from tagging.services.few_shot import few_shot_examples_select
from tagging.services.recipes import recipe_content_hash, recipe_embed_for_tagging
from tagging.services.rules import output_apply_rules, tags_ruled_out
from tagging.services.tagger_state import learned_model_active
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from tagging.taggers.hybrid import HybridPlan, HybridTagger
from tagging.taggers.llm import LLMAsk, LLMStats, LLMTagger
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Category, Tag
from taxonomy.selectors import ingredient_groups_version

logger = logging.getLogger(__name__)


class LLMFailed(TaggingError):
    """The language model could not give a usable answer (after the bounded retries)."""

    code = "llm_failed"
    status = 502


def _taxonomy_version(requests: Sequence[CategoryRequest]) -> str:
    """Changes whenever a category the requests cover or a tag they could return is edited, added,
    (de)activated or removed, or an ingredient group changes: everything the prompt shows of the taxonomy,
    and the rules that decide what hybrid offers and what is removed."""
    category_ids = [r.category.pk for r in requests]
    categories = Category.objects.filter(pk__in=category_ids).order_by("id").values_list("id", "updated_at")
    tags = Tag.objects.filter(category_id__in=category_ids).order_by("id").values_list("id", "updated_at", "active")
    state = (list(categories), list(tags), ingredient_groups_version())
    return hashlib.sha256(repr(state).encode()).hexdigest()


def llm_cache_key(
    *,
    content_hash: str,
    config: TaggingConfig,
    requests: Sequence[CategoryRequest],
    source: LLMSourceConfig,
    prompt: PromptTemplates | None = None,
) -> str:
    """What decides an llm or hybrid answer, hashed: the same key asks the model the same question. The
    prompt is the version asked with (`prompt`, by default the active one of the strategy's prompt):
    activating another changes it. A
    stored version's templates never change (a database trigger), so its id says what it asks; templates
    without one (a playground draft, the built-in prompt) are keyed by their text, so that two drafts under
    the same label never share answers."""
    prompt = prompt or tagging_prompt_active(strategy=config.strategy)
    parts = {
        "content": content_hash,
        "prompt": [prompt.label, prompt.version_id],
        "taxonomy": _taxonomy_version(requests),
        "model": f"{source.base_url}|{source.model}",
        "strategy": config.strategy,
        "k": {r.category.slug: r.k for r in requests},
        "threshold": config.threshold,
        # The few-shot examples (both strategies) and hybrid's shortlist come from what the tagger learned.
        "state": TaggerState.objects.filter(active=True, embedding_model=embedding_model_name())
        .values_list("id", flat=True)
        .first(),
        "hybrid": [
            settings.HYBRID_ACCEPT,
            settings.HYBRID_ZERO_SHOT_ACCEPT,
            settings.HYBRID_MISS_SHARE,
            settings.HYBRID_FLOOR,
            settings.HYBRID_SHORTLIST_MIN,
            settings.HYBRID_SHORTLIST_MAX_PER_K,
            settings.HYBRID_ZERO_SHOT_PER_K,
            settings.HYBRID_FEW_SHOT_EXAMPLES,
            settings.HYBRID_BRIEF_TAGS,
            settings.HYBRID_RECIPE_MAX_TOKENS,
            RECIPE_CUT,
            embedding_model_name(),
        ]
        if config.strategy == Strategy.HYBRID
        else None,
    }
    if prompt.version_id is None:
        # Added only here: the keys of stored versions stay what they were before drafts were evaluated.
        parts["templates"] = hashlib.sha256(f"{prompt.system_template}\0{prompt.user_template}".encode()).hexdigest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _llm_cached(key: str, run: TaggingRun, requests: Sequence[CategoryRequest]) -> TaggerOutput | None:
    """The tags of an earlier successful run with the same cache key: same recipe content, prompt
    version, taxonomy version, model and settings, so the LLM would be asked the same question. The tags
    its ingredient rules removed are given back too, so that this run shows them removed as well."""
    earlier = (
        TaggingRun.objects.filter(status=RunStatus.SUCCEEDED, stats__cache_key=key)
        .exclude(pk=run.pk)
        .order_by("-id")
        .first()
    )
    if earlier is None:
        return None
    output = TaggerOutput(tags={r.category.pk: [] for r in requests})
    # The removed tags first: they are removed again (the rules are part of the cache key) before the others
    # are cut to k.
    category_ids = {r.category.slug: r.category.pk for r in requests}
    removed = [r for r in earlier.removed_by_rule if r.get("category") in category_ids]
    if removed:
        tags = Tag.objects.filter(category_id__in=category_ids.values(), slug__in=[r["tag"] for r in removed])
        by_slug = {(tag.category_id, tag.slug): tag for tag in tags}
        for entry in removed:
            tag = by_slug.get((category_ids[entry["category"]], entry["tag"]))
            if tag is not None:
                output.tags[tag.category_id].append(
                    ScoredTag(tag_id=tag.pk, slug=tag.slug, name=tag.name, score=entry["score"])
                )
    for assignment in earlier.assignments.select_related("tag").order_by("rank", "id"):
        if assignment.tag.category_id in output.tags:
            output.tags[assignment.tag.category_id].append(
                ScoredTag(
                    tag_id=assignment.tag_id,
                    slug=assignment.tag.slug,
                    name=assignment.tag.name,
                    score=assignment.score,
                    evidence=assignment.evidence,
                )
            )
    return output


def text_tag_with_llm(
    *,
    text: RecipeText,
    embedding: np.ndarray | None,
    strategy: str,
    requests: Sequence[CategoryRequest],
    source: LLMSourceConfig,
    run_id: int | None,
    exclude_recipe_id: int | None,
    content_hash: str,
    prompt: PromptTemplates | None = None,
    ask: LLMAsk | None = None,
    plan: HybridPlan | None = None,
) -> tuple[TaggerOutput, LLMStats]:
    """Ask the model about `text` with the llm or hybrid strategy (hybrid needs `embedding`); the few-shot
    examples are the nearest labelled recipes, never this one (`exclude_recipe_id`, `content_hash`). `ask`
    (default: live) and hybrid's `plan` (default: decided now) are for the Batch API's two passes.
    Raises LLMError (QuestionDeferred from an `ask` that defers). Ingredient rules are the caller's to apply."""
    learned = learned_model_active()
    examples: list[FewShotExample] = []
    if embedding is not None:
        examples = few_shot_examples_select(
            model=learned,
            embedding=embedding,
            category_slugs=[r.category.slug for r in requests],
            exclude_recipe_id=exclude_recipe_id,
            exclude_content_hash=content_hash,
            limit=int(settings.HYBRID_FEW_SHOT_EXAMPLES) if strategy == Strategy.HYBRID else None,
        )
    if strategy == Strategy.HYBRID:
        if embedding is None:
            raise ValueError("the hybrid strategy needs the recipe's embedding")
        similarity = SimilarityTagger(model=embedding_model_name(), learned=learned)
        # Tags the recipe's ingredients rule out are never offered to the model (they would be removed
        # anyway); the llm strategy offers every tag, so its prompt stays the same from recipe to recipe.
        candidates = Tag.objects.filter(category_id__in=[r.category.pk for r in requests], active=True)
        ruled_out = tags_ruled_out(recipe=text, tag_ids=candidates.values_list("id", flat=True))
        return HybridTagger(similarity=similarity, source=source, examples=examples, prompt=prompt, ask=ask).tag(
            recipe=text,
            embedding=embedding,
            requests=requests,
            run_id=run_id,
            ruled_out=frozenset(ruled_out),
            plan=plan,
        )
    return LLMTagger(source=source, examples=examples, prompt=prompt, ask=ask).tag(
        recipe=text, requests=requests, run_id=run_id
    )


def run_tag_with_llm(
    run: TaggingRun,
    config: TaggingConfig,
    requests: Sequence[CategoryRequest],
    *,
    ask: LLMAsk | None = None,
    plan: HybridPlan | None = None,
    prompt: PromptTemplates | None = None,
    source: LLMSourceConfig | None = None,
    cached: bool = True,
) -> tuple[TaggerOutput, dict[str, Any]]:
    """Tag with the llm or hybrid strategy (on the worker: this waits on the model). Raises TaggingError.

    The Batch API (tagging.services.batches) runs it twice: first with an `ask` that defers the question
    (QuestionDeferred leaves through here), then with one that answers it from the batch, with the `plan`,
    `prompt` and `source` of the first pass and no look at the cache (`cached`: the answer is paid for), so that
    the run is stored as a live one would be."""
    started = time.perf_counter()
    source = source or llm_source_resolve(config=config)
    recipe = run.recipe
    # Read once: the cache key, the call and the run's stats name the same version, whatever is activated meanwhile.
    prompt = prompt or tagging_prompt_active(strategy=config.strategy)
    key = llm_cache_key(
        content_hash=recipe.content_hash, config=config, requests=requests, source=source, prompt=prompt
    )
    # What the run asked with, for telling when its tags are stale (tagging.selectors.recipes_stale).
    run.prompt_version_id, run.llm_source, run.llm_model = prompt.version_id, source.name, source.model
    described = {
        "cache_key": key,
        "prompt_version": prompt.label,
        "prompt_version_id": prompt.version_id,
        "source": source.name,
        "llm_model": source.model,
    }
    earlier = _llm_cached(key, run, requests) if cached else None
    if earlier is not None:
        earlier.timings_ms = {"total_ms": round((time.perf_counter() - started) * 1000, 2)}
        return earlier, {**described, "cache_hit": True, "llm_calls": 0}
    try:
        recipe_embed_for_tagging(recipe=recipe, requests=requests)
        output, stats = text_tag_with_llm(
            text=recipe.text,
            embedding=np.asarray(recipe.embedding),
            strategy=config.strategy,
            requests=requests,
            source=source,
            run_id=run.pk,
            exclude_recipe_id=recipe.pk,
            content_hash=recipe.content_hash,
            prompt=prompt,
            ask=ask,
            plan=plan,
        )
    except LLMError as exc:
        raise LLMFailed(exc.message, details={"llm_error": exc.code}) from exc
    output.timings_ms["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    usage = llm_usage_of_run(run_id=run.pk)
    return output, {**described, **stats.as_dict(), **usage, "cache_hit": False}


def text_predict_with_llm(
    *,
    text: RecipeText,
    embedding: np.ndarray,
    config: TaggingConfig,
    requests: Sequence[CategoryRequest],
    source: LLMSourceConfig,
    prompt: PromptTemplates | None = None,
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, Any]]:
    """What the llm or hybrid strategy returns for `text` (category slug -> [(tag slug, score)], ingredient
    rules applied) and the call's stats, with nothing stored: for evaluating the strategies as deployed, worded
    by `prompt` (None: the active version of the strategy's prompt). Raises LLMError."""
    content_hash = recipe_content_hash(title=text.title, ingredients=text.ingredients, instructions=text.instructions)
    output, stats = text_tag_with_llm(
        text=text,
        embedding=embedding,
        strategy=config.strategy,
        requests=requests,
        source=source,
        run_id=None,
        exclude_recipe_id=None,
        content_hash=content_hash,
        prompt=prompt or tagging_prompt_active(strategy=config.strategy),
    )
    output_apply_rules(recipe=text, output=output, requests=requests)
    slugs = {r.category.pk: r.category.slug for r in requests}
    # The confidence the model stated for each tag it returned: what a calibration on gold labels learns from.
    stated = {
        slugs[pk]: {t.slug: t.evidence["stated_confidence"] for t in tags if "stated_confidence" in t.evidence}
        for pk, tags in output.tags.items()
    }
    predicted = {slugs[pk]: [(t.slug, t.score) for t in tags] for pk, tags in output.tags.items()}
    return predicted, {**stats.as_dict(), "stated_confidence": {slug: c for slug, c in stated.items() if c}}
