"""The prompt playground: a draft of the tagging prompt and the active version asked about the same recipe, side by
side, through the llm strategy's own exchange with the model (tagging.taggers.llm.llm_exchange). Saving the draft
is prompts.services.prompt_draft_save.

Nothing here stores tags: no TaggingRun, no TagAssignment. The calls are in the LLMCall ledger (run_id None, both
prompt labels ending in " (playground)"), as every call to a model is. No few-shot examples are shown to the
model: the playground compares wordings, and the same recipe gets the same question from both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from autotagger.recipe_text import RecipeText
from prompts.rendering import PromptTemplates, template_problems
from prompts.services import PromptTemplateInvalid
from prompts.sources import LLMError, LLMSourceConfig
from tagging.models import Strategy
from tagging.services.config import TaggingConfig, category_requests
from tagging.taggers.base import CategoryRequest
from tagging.taggers.llm import active_tags_of, category_choices, llm_exchange, llm_picks
from taxonomy.models import Tag

PLAYGROUND_LABEL_SUFFIX = " (playground)"


@dataclass(frozen=True)
class PlaygroundTag:
    slug: str
    name: str
    score: float
    score_from: str
    reason: str


@dataclass(frozen=True)
class PlaygroundCategory:
    slug: str
    name: str
    k: int
    tags: list[PlaygroundTag]


@dataclass(frozen=True)
class PlaygroundSide:
    """What one prompt did with the recipe; `error` (the LLM error's message) when the model gave no usable reply."""

    label: str
    system: str = ""
    user: str = ""
    reply_text: str = ""
    categories: list[PlaygroundCategory] = field(default_factory=list)
    unknown_dropped: int = 0
    over_k_dropped: int = 0
    duplicates_dropped: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    mode: str = ""
    error: str = ""


@dataclass(frozen=True)
class PlaygroundComparison:
    draft: PlaygroundSide
    active: PlaygroundSide


def _side(
    *,
    prompt: PromptTemplates,
    recipe: RecipeText,
    requests: Sequence[CategoryRequest],
    tags: Mapping[int, Sequence[Tag]],
    source: LLMSourceConfig,
) -> PlaygroundSide:
    choices = category_choices(requests, tags)
    try:
        exchange = llm_exchange(recipe=recipe, choices=choices, source=source, run_id=None, prompt=prompt)
    except LLMError as exc:
        return PlaygroundSide(label=prompt.label, error=exc.message)
    picked = llm_picks(requests=requests, tags=tags, validated=exchange.validated)
    categories = [
        PlaygroundCategory(
            slug=r.category.slug,
            name=r.category.name,
            k=r.k,
            tags=[
                PlaygroundTag(
                    slug=t.slug,
                    name=t.name,
                    score=t.score,
                    score_from=str(t.evidence.get("score_from", "")),
                    reason=str(t.evidence.get("reason", "")),
                )
                for t in picked.get(r.category.pk, [])
            ],
        )
        for r in requests
    ]
    reply, validated = exchange.reply, exchange.validated
    return PlaygroundSide(
        label=prompt.label,
        system=exchange.system,
        user=exchange.user,
        reply_text=reply.text,
        categories=categories,
        unknown_dropped=validated.unknown_dropped,
        over_k_dropped=validated.over_k_dropped,
        duplicates_dropped=validated.duplicates_dropped,
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        cached_tokens=reply.cached_tokens,
        cost=reply.cost,
        latency_ms=reply.latency_ms,
        mode=reply.mode,
    )


def prompt_playground_run(
    *,
    draft_system: str,
    draft_user: str,
    draft_label: str,
    active: PromptTemplates,
    recipe: RecipeText,
    source: LLMSourceConfig,
    categories: tuple[str, ...] | None,
    k: int | None,
) -> PlaygroundComparison:
    """Ask `source` about `recipe` twice, worded by the draft templates and by `active`, for `categories` (None:
    every active one) with at most `k` tags each (None: each category's default). A model's failure is shown on
    its side. Raises PromptTemplateInvalid (the draft's problems per field) and TaggingError (categories, k)
    before any call."""
    problems = template_problems(system_template=draft_system, user_template=draft_user)
    if problems:
        first = next(iter(problems.values()))[0]
        raise PromptTemplateInvalid(f"The draft cannot be rendered: {first}", details=problems)
    requests = category_requests(
        config=TaggingConfig(strategy=Strategy.LLM, k=k, categories=categories, source=source.name)
    )
    tags = active_tags_of(requests)
    draft = PromptTemplates(
        label=draft_label + PLAYGROUND_LABEL_SUFFIX, system_template=draft_system, user_template=draft_user
    )
    # Both calls are marked in the ledger as the playground's: they tagged nothing.
    active = replace(active, label=active.label + PLAYGROUND_LABEL_SUFFIX)
    return PlaygroundComparison(
        draft=_side(prompt=draft, recipe=recipe, requests=requests, tags=tags, source=source),
        active=_side(prompt=active, recipe=recipe, requests=requests, tags=tags, source=source),
    )
