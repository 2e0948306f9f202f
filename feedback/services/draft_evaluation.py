"""A draft of the tagging prompt run over labelled recipes as background jobs, beside the active version: two
evaluation jobs (feedback.evaluation.jobs) on the same data, the draft's linked to the active version's, each
ending in an EvaluationRun with the metrics of `evaluate`. The data is an uploaded labelled JSONL file, a shared
dataset (EVALUATION_DATASETS_DIR, when that folder exists) or recipes of the database that have gold labels.

Nothing here changes stored tags: an evaluation job keeps its answers as EvaluationItems, never as runs,
assignments or gold labels. The draft's answers are cached by its templates' text (llm_cache_key), the active
version's by its id, so neither is ever served the other's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Max, Q

from autotagger.errors import DomainError
from feedback.evaluation.jobs import evaluation_job_start
from feedback.models import EvaluationJob
from feedback.selectors import gold_labels_by_recipe
from prompts.rendering import PromptTemplates, template_problems
from prompts.selectors import prompt_version_active
from prompts.services import PromptTemplateInvalid
from tagging.models import Strategy
from tagging.selectors import recipes_visible

# How many labelled recipes of the database one selection may hold: each is a model call per side.
LABELLED_SELECTION_MAX = 500


class DraftEvaluationError(DomainError):
    code = "draft_evaluation_invalid"


@dataclass(frozen=True)
class DraftEvaluation:
    draft: EvaluationJob
    active: EvaluationJob


def shared_datasets() -> list[str]:
    """The names of the labelled datasets in EVALUATION_DATASETS_DIR (none when the folder is not there)."""
    folder = Path(settings.EVALUATION_DATASETS_DIR)
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.jsonl") if path.is_file())


def shared_dataset_content(*, name: str) -> bytes:
    """The file of the shared dataset `name`; only a name `shared_datasets` lists is read (never a path)."""
    if name not in shared_datasets():
        raise DraftEvaluationError(f"There is no shared dataset named {name!r}.", details={"dataset": name})
    return (Path(settings.EVALUATION_DATASETS_DIR) / f"{name}.jsonl").read_bytes()


def labelled_recipes_dataset(
    *,
    user: AbstractBaseUser | AnonymousUser | None,
    recipe_ids: list[int] | None = None,
    query: str = "",
    source: str = "",
    limit: int = 20,
) -> tuple[str, bytes]:
    """Recipes of the database with gold labels that `user` may read, as a labelled JSONL dataset (its name and
    content; tags by slug): those of `recipe_ids`, or else the `limit` most recently labelled whose title
    contains `query` and whose source is `source` (when given). Raises DraftEvaluationError naming ids that are
    not such recipes, or when the selection is empty."""
    if not 1 <= limit <= LABELLED_SELECTION_MAX:
        raise DraftEvaluationError(f"Select between 1 and {LABELLED_SELECTION_MAX} labelled recipes, not {limit}.")
    labelled = (
        recipes_visible(user=user)
        .defer("embedding")
        .annotate(last_label=Max("gold_labels__id"))
        .filter(last_label__isnull=False)
    )
    if recipe_ids:
        wanted = list(dict.fromkeys(recipe_ids))
        if len(wanted) > LABELLED_SELECTION_MAX:
            raise DraftEvaluationError(f"Select at most {LABELLED_SELECTION_MAX} labelled recipes, not {len(wanted)}.")
        recipes = list(labelled.filter(pk__in=wanted).order_by("id"))
        missing = sorted(set(wanted) - {r.pk for r in recipes})
        if missing:
            raise DraftEvaluationError(
                f"No labelled recipe you may read has the id(s) {', '.join(map(str, missing))}.",
                details={"recipe_ids": missing},
            )
        name = f"labelled-recipes-{len(recipes)}-by-id"
    else:
        matches = Q(title__icontains=query) if query else Q()
        if source:
            matches &= Q(source=source)
        recipes = list(labelled.filter(matches).order_by("-last_label", "-id")[:limit])
        name = f"labelled-recipes-{len(recipes)}-latest"
    if not recipes:
        raise DraftEvaluationError("No labelled recipe you may read matches the selection.")
    labels = gold_labels_by_recipe(recipe_ids=[r.pk for r in recipes])
    lines = [
        json.dumps(
            {
                "id": f"recipe-{recipe.pk}",
                "title": recipe.title,
                "ingredients": recipe.ingredients,
                "instructions": recipe.instructions,
                "tags": {category: sorted(tags) for category, tags in sorted(labels.get(recipe.pk, {}).items())},
            },
            ensure_ascii=False,
        )
        for recipe in recipes
    ]
    return name, ("\n".join(lines) + "\n").encode()


@transaction.atomic
def draft_evaluation_start(
    *,
    content: bytes,
    name: str,
    draft_system: str,
    draft_user: str,
    draft_label: str,
    source: str | None,
    k: int,
    categories: list[str] | None,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> DraftEvaluation:
    """Store two queued llm evaluation jobs on the dataset `content`: the draft templates' (labelled
    `draft_label`) and the active version's, the draft's pointing at the active one's (the caller enqueues
    both). Raises PromptTemplateInvalid (the draft's problems per field, as when saving it), EvaluationError
    and DatasetError (feedback.evaluation.jobs) before anything is stored."""
    problems = template_problems(system_template=draft_system, user_template=draft_user)
    if problems:
        first = next(iter(problems.values()))[0]
        raise PromptTemplateInvalid(f"The draft cannot be rendered: {first}", details=problems)

    def start(prompt: PromptTemplates, compared_with: EvaluationJob | None = None) -> EvaluationJob:
        return evaluation_job_start(
            content=content,
            name=name,
            strategy=Strategy.LLM,
            source=source,
            k=k,
            categories=categories,
            user=user,
            prompt=prompt,
            compared_with=compared_with,
        )

    active = start(prompt_version_active())
    draft = start(
        # The job's, the ledger's and the evaluation run's prompt label hold 100 characters.
        PromptTemplates(label=draft_label[:100], system_template=draft_system, user_template=draft_user),
        compared_with=active,
    )
    return DraftEvaluation(draft=draft, active=active)
