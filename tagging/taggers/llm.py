"""The `llm` strategy: an OpenAI-compatible chat model picks tags, constrained to the taxonomy.

The reply is constrained by a JSON schema (one array per category whose items are an enum of that
category's allowed slugs) in the best mode the source supports, and always validated here: unknown
slugs are dropped and counted, duplicates removed, at most k kept. Scores (prompts.rendering.reply_validate)
come from the tokens' log-probabilities only when the reply was decoded freely (under a schema they
describe the unconstrained distribution, not the choice); otherwise from the confidence the model stated,
mapped through the source's calibration on gold labels; otherwise LLM_FIXED_SCORE. Each tag's evidence
says which ("score_from") and keeps the stated confidence, so an evaluation can calibrate it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autotagger.recipe_text import RecipeText
from prompts.gateway import ChatResult, chat_json
from prompts.rendering import (
    CategoryChoice,
    FewShotExample,
    PromptTemplates,
    TagChoice,
    ValidatedReply,
    prompt_messages,
    reply_schema,
    reply_validate,
    schema_within_limits,
)
from prompts.selectors import prompt_version_active
from prompts.sources import LLMSourceConfig
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from taxonomy.models import Tag


@dataclass
class LLMStats:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    unknown_dropped: int = 0
    over_k_dropped: int = 0
    duplicates_dropped: int = 0
    mode: str = ""
    tags_offered: int = 0
    examples: int = 0  # few-shot examples in the prompt
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "llm_calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost": round(self.cost, 6),
            "unknown_dropped": self.unknown_dropped,
            "over_k_dropped": self.over_k_dropped,
            "duplicates_dropped": self.duplicates_dropped,
            "mode": self.mode,
            "tags_offered": self.tags_offered,
            "few_shot_examples": self.examples,
            **self.extra,
        }


def category_choices(
    requests: Sequence[CategoryRequest], tags: Mapping[int, Sequence[Tag]], slots: dict[int, int] | None = None
) -> list[CategoryChoice]:
    """What the model is offered per category: its allowed tags and how many it may pick."""
    return [
        CategoryChoice(
            slug=r.category.slug,
            name=r.category.name,
            description=r.category.description,
            k=(slots or {}).get(r.category.pk, r.k),
            tags=tuple(
                TagChoice(slug=t.slug, name=t.name, description=t.description, synonyms=tuple(t.synonyms))
                for t in tags[r.category.pk]
            ),
        )
        for r in requests
        if tags.get(r.category.pk)
    ]


def _llm_evidence(validated: ValidatedReply, pair: tuple[str, str]) -> dict[str, object]:
    """The model's decision, where its score came from, the confidence it stated (what a calibration on
    gold labels learns from) and its reason."""
    evidence: dict[str, object] = {"decided_by": "llm", "score_from": validated.score_kinds[pair]}
    if pair in validated.confidences:
        evidence["stated_confidence"] = validated.confidences[pair]
    if pair in validated.reasons:
        evidence["reason"] = validated.reasons[pair]
    return evidence


@dataclass(frozen=True)
class LLMQuestion:
    """What is asked of the model: the messages, the reply's schema (None: the source takes none, or it is too
    large for strict mode) and the prompt's label, which the call records."""

    system: str
    user: str
    schema: dict[str, Any] | None
    prompt_version: str
    schema_name: str = "recipe_tags"
    want_logprobs: bool = True


class QuestionDeferred(Exception):
    """Raised by an `ask` that sends the question elsewhere (a Batch API batch) rather than answering it now. It
    carries the question and, when raised through the hybrid tagger, the plan it made without the model."""

    def __init__(self, question: LLMQuestion) -> None:
        super().__init__("The question was deferred")
        self.question = question
        self.plan: Any = None  # tagging.taggers.hybrid.HybridPlan, set by the hybrid tagger


# How a question reaches the model: live by default (`ask_live`); a run in a Batch API batch is asked through
# the batch and answered with the batch's reply (tagging.services.batches).
LLMAsk = Callable[[LLMQuestion], ChatResult]


def ask_live(*, source: LLMSourceConfig, run_id: int | None) -> LLMAsk:
    def ask(question: LLMQuestion) -> ChatResult:
        return chat_json(
            source=source,
            system=question.system,
            user=question.user,
            schema=question.schema,
            schema_name=question.schema_name,
            want_logprobs=question.want_logprobs,
            prompt_version=question.prompt_version,
            run_id=run_id,
        )

    return ask


@dataclass(frozen=True)
class LLMExchange:
    """One question to the model and what came of it: the messages as sent, the reply as received (text,
    tokens, cost, latency) and as validated against the taxonomy."""

    system: str
    user: str
    reply: ChatResult
    validated: ValidatedReply


def llm_exchange(
    *,
    recipe: RecipeText,
    choices: Sequence[CategoryChoice],
    source: LLMSourceConfig,
    run_id: int | None,
    prompt: PromptTemplates,
    examples: Sequence[FewShotExample] = (),
    brief_tags: bool = False,
    recipe_max_tokens: int | None = None,
    ask: LLMAsk | None = None,
) -> LLMExchange:
    """Render `prompt` for `recipe` and `choices`, ask `source` (under the reply's schema where the source takes
    it; through `ask`, live by default) and validate the reply: what `llm_pick` does with the model, and what
    the prompt playground shows. Raises LLMError."""
    system, user = prompt_messages(
        recipe=recipe,
        categories=choices,
        examples=examples,
        brief_tags=brief_tags,
        recipe_max_tokens=recipe_max_tokens,
        templates=prompt,
    )
    schema = reply_schema(categories=choices)
    strict = source.supports_json_schema and schema_within_limits(schema)
    question = LLMQuestion(system=system, user=user, schema=schema if strict else None, prompt_version=prompt.label)
    result = (ask or ask_live(source=source, run_id=run_id))(question)
    validated = reply_validate(
        data=result.data,
        categories=choices,
        text=result.text,
        token_logprobs=result.token_logprobs,
        constrained=result.constrained,
        calibration=source.confidence_calibration,
    )
    return LLMExchange(system=system, user=user, reply=result, validated=validated)


def llm_picks(
    *, requests: Sequence[CategoryRequest], tags: Mapping[int, Sequence[Tag]], validated: ValidatedReply
) -> dict[int, list[ScoredTag]]:
    """The validated reply's tags per category id, scored, with their evidence."""
    picked: dict[int, list[ScoredTag]] = {}
    for request in requests:
        by_slug = {t.slug: t for t in tags.get(request.category.pk, ())}
        picked[request.category.pk] = [
            ScoredTag(
                tag_id=by_slug[slug].pk,
                slug=slug,
                name=by_slug[slug].name,
                score=validated.scores[(request.category.slug, slug)],
                evidence=_llm_evidence(validated, (request.category.slug, slug)),
            )
            for slug in validated.tags.get(request.category.slug, [])
        ]
    return picked


def llm_pick(
    *,
    recipe: RecipeText,
    requests: Sequence[CategoryRequest],
    tags: Mapping[int, Sequence[Tag]],
    source: LLMSourceConfig,
    run_id: int | None,
    slots: dict[int, int] | None = None,
    examples: Sequence[FewShotExample] = (),
    brief_tags: bool = False,
    recipe_max_tokens: int | None = None,
    prompt: PromptTemplates | None = None,
    ask: LLMAsk | None = None,
) -> tuple[dict[int, list[ScoredTag]], LLMStats]:
    """One call: the model picks among `tags` (per category id) for `recipe`, shown `examples` (labelled
    recipes with their tags), the tags listed in brief when `brief_tags`, the recipe within
    `recipe_max_tokens` (None: whole), in the wording of `prompt` (by default the active version of the default
    tagging prompt), whose label the call records. Raises LLMError."""
    choices = category_choices(requests, tags, slots)
    stats = LLMStats(tags_offered=sum(len(c.tags) for c in choices), examples=len(examples))
    if not choices:
        return {}, stats
    exchange = llm_exchange(
        recipe=recipe,
        choices=choices,
        source=source,
        run_id=run_id,
        examples=examples,
        brief_tags=brief_tags,
        recipe_max_tokens=recipe_max_tokens,
        prompt=prompt or prompt_version_active(),
        ask=ask,
    )
    result, validated = exchange.reply, exchange.validated
    stats.calls = result.attempts
    stats.input_tokens, stats.output_tokens, stats.cached_tokens = (
        result.input_tokens,
        result.output_tokens,
        result.cached_tokens,
    )
    stats.cost = result.cost
    stats.unknown_dropped = validated.unknown_dropped
    stats.over_k_dropped = validated.over_k_dropped
    stats.duplicates_dropped = validated.duplicates_dropped
    stats.mode = result.mode
    picked = llm_picks(requests=requests, tags=tags, validated=validated)
    return picked, stats


def active_tags_of(requests: Sequence[CategoryRequest]) -> dict[int, list[Tag]]:
    """What the llm strategy offers: every active tag of the requested categories, per category id."""
    tags: dict[int, list[Tag]] = {r.category.pk: [] for r in requests}
    for tag in Tag.objects.filter(category_id__in=list(tags), active=True).order_by("name", "id"):
        tags[tag.category_id].append(tag)
    return tags


class LLMTagger:
    def __init__(
        self,
        *,
        source: LLMSourceConfig,
        examples: Sequence[FewShotExample] = (),
        prompt: PromptTemplates | None = None,
        ask: LLMAsk | None = None,
    ) -> None:
        self.source = source
        self.examples = examples
        self.prompt = prompt  # None: the active version of the default tagging prompt
        self.ask = ask  # None: live

    def tag(
        self, *, recipe: RecipeText, requests: Sequence[CategoryRequest], run_id: int | None
    ) -> tuple[TaggerOutput, LLMStats]:
        started = time.perf_counter()
        tags = active_tags_of(requests)
        picked, stats = llm_pick(
            recipe=recipe,
            requests=requests,
            tags=tags,
            source=self.source,
            run_id=run_id,
            examples=self.examples,
            prompt=self.prompt,
            ask=self.ask,
        )
        output = TaggerOutput()
        for request in requests:
            chosen = picked.get(request.category.pk, [])
            if request.override is not None:
                chosen = [t for t in chosen if t.score >= request.override]
            output.tags[request.category.pk] = chosen[: request.k]
        output.timings_ms = {"llm_ms": round((time.perf_counter() - started) * 1000, 2)}
        return output, stats
