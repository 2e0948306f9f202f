"""The LLM judge: a language model rates each tag a run suggested as relevant, partly relevant or not relevant,
with a short reason, in the wording of the active judging prompt (prompts.judging renders it and reads the
reply). The run's tags are listed in an order shuffled by a seed (the run's id: the same run is always asked in
the same order, different runs in different ones), recorded with each verdict. The reply is constrained by a
JSON schema (the tag keys fixed, the verdicts an enum) in the source's best mode and validated all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from autotagger.errors import DomainError
from autotagger.recipe_text import RecipeText
from prompts.gateway import chat_json
from prompts.judging import (
    JudgedTag,
    ValidatedJudgement,
    judge_messages,
    judge_reply_schema,
    judge_reply_validate,
    judge_tags_shuffled,
)
from prompts.models import PromptPurpose
from prompts.rendering import PromptTemplates, schema_within_limits
from prompts.selectors import prompt_version_active
from prompts.sources import LLMNotConfigured, LLMSourceConfig, llm_source_get
from tagging.models import RunStatus, TagAssignment, TaggingRun, TagJudgement


class JudgeError(DomainError):
    code = "judge_invalid"


class RunNotJudgeable(JudgeError):
    """The run has not succeeded: it has no tags to judge (yet)."""

    code = "run_not_succeeded"
    status = 409


class JudgeSourceUnknown(JudgeError):
    """No active LLM source has the name asked for (the answer names no other source)."""

    code = "llm_not_configured"


@dataclass(frozen=True)
class JudgeResult:
    """What judging a run did: the verdicts stored, the tags left without one, the keys the reply had that were
    not asked about, the HTTP attempts made, and the prompt version and seed used."""

    judged: int
    missing: int
    unknown_dropped: int
    calls: int
    prompt_version: str
    source: str
    seed: int


def tags_judge(
    *,
    recipe: RecipeText,
    tags: Sequence[JudgedTag],
    source: LLMSourceConfig,
    templates: PromptTemplates,
    seed: int,
    run_id: int | None = None,
) -> tuple[list[JudgedTag], ValidatedJudgement, int]:
    """One call: `source` judges `tags` for `recipe`, listed in the order `seed` gives, in the wording of
    `templates`. Returns the tags in the order asked, the validated verdicts and the HTTP attempts made. Call it
    outside any transaction (it waits on the model). Raises LLMError."""
    shuffled = judge_tags_shuffled(tags, seed=seed)
    system, user = judge_messages(recipe=recipe, tags=shuffled, templates=templates)
    schema = judge_reply_schema(tags=shuffled)
    strict = source.supports_json_schema and schema_within_limits(schema)
    result = chat_json(
        source=source,
        system=system,
        user=user,
        schema=schema if strict else None,
        schema_name="tag_judgements",
        want_logprobs=False,
        prompt_version=templates.label,
        run_id=run_id,
    )
    return shuffled, judge_reply_validate(data=result.data, tags=shuffled), result.attempts


def run_judgeable_check(*, run: TaggingRun) -> None:
    """Raise RunNotJudgeable unless `run` has succeeded."""
    if run.status != RunStatus.SUCCEEDED:
        raise RunNotJudgeable(
            f"Run {run.pk} has not succeeded ({run.status}): it has no tags to judge yet.",
            details={"run": run.pk, "status": run.status},
        )


def judge_source_check(*, source: str | None) -> str:
    """The name of the source the judge would ask (None: the default); raises JudgeSourceUnknown when there is
    no such active source, or it is not configured, saying why."""
    try:
        return llm_source_get(name=source).name
    except LLMNotConfigured as exc:
        raise JudgeSourceUnknown(f"The LLM judge cannot ask it: {exc.message}", details=exc.details) from exc


def run_judge(*, run: TaggingRun, source: str | None = None) -> JudgeResult:
    """Ask the LLM `source` (None: the default source) to judge every tag `run` suggested, and store a
    TagJudgement per tag that got a verdict (replacing an earlier one of the same prompt version and source).
    A run without tags is not sent. Raises RunNotJudgeable for a run that has not succeeded, LLMError (from
    prompts.sources and prompts.gateway) when the model gives no usable answer."""
    run_judgeable_check(run=run)
    config = llm_source_get(name=source)
    templates = prompt_version_active(purpose=PromptPurpose.JUDGING)
    seed = run.pk
    assignments = {
        f"{a.tag.category.slug}/{a.tag.slug}": a
        for a in TagAssignment.objects.filter(run=run).select_related("tag__category").order_by("rank", "id")
    }
    if not assignments:
        return JudgeResult(0, 0, 0, 0, templates.label, config.name, seed)
    tags, validated, attempts = tags_judge(
        recipe=run.recipe.text,
        tags=[
            JudgedTag(
                category_slug=a.tag.category.slug,
                category_name=a.tag.category.name,
                slug=a.tag.slug,
                name=a.tag.name,
            )
            for a in assignments.values()
        ],
        source=config,
        templates=templates,
        seed=seed,
        run_id=run.pk,
    )
    positions = {tag.key: position for position, tag in enumerate(tags, start=1)}
    with transaction.atomic():
        for key, verdict in validated.verdicts.items():
            TagJudgement.objects.update_or_create(
                assignment=assignments[key],
                prompt_version=templates.label,
                source=config.name,
                defaults={
                    "verdict": verdict.verdict,
                    "reason": verdict.reason,
                    "shuffle_seed": seed,
                    "position": positions[key],
                },
            )
    return JudgeResult(
        judged=len(validated.verdicts),
        missing=validated.missing,
        unknown_dropped=validated.unknown_dropped,
        calls=attempts,
        prompt_version=templates.label,
        source=config.name,
        seed=seed,
    )
