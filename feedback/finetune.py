"""Reviewed recipes as OpenAI chat fine-tuning data (JSON lines of {"messages": [system, user, assistant]}), so a
team can fine-tune a model on what people said and add it as an LLM source.

Each line asks what the llm strategy asks, in its words: the system and user messages are rendered by
prompts.rendering.prompt_messages with the active tagging prompt and the taxonomy as the strategy offers it
(tagging.taggers.llm: every active tag of each category, at most the category's default k), and the assistant
answers in the reply schema the strategy validates: one key per category, each an array of {"tag", "reason",
"confidence"} holding the recipe's gold labels (reason empty, since a label carries none; confidence 1, since a
person said so). `reply_validate` reads that answer back as exactly those labels.

- Categories asked: those the recipe has a gold label in. Gold labels are often given for some categories only,
  and an empty array would teach "nothing applies" where nobody looked.
- No few-shot examples: a fine-tuned model learns from the training lines themselves, and examples drawn from the
  tagger's labelled recipes would put validation recipes into training prompts.
- Left out, and counted: a recipe with more labels in a category than the prompt lets the model give (the line
  would teach it to break k), labels of inactive tags or categories (the prompt does not offer them), and a
  recipe with no label left.
- Train or validation is decided by a hash of the recipe's id: a recipe stays on its side from one export to
  the next, and a larger validation share only moves recipes from train to validation.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db.models import QuerySet

from autotagger.recipe_text import RecipeText
from feedback.models import GoldLabel, GoldLabelSource
from prompts.rendering import CategoryChoice, PromptTemplates, prompt_messages
from prompts.selectors import prompt_version_active
from tagging.models import Recipe
from tagging.taggers.base import CategoryRequest
from tagging.taggers.llm import active_tags_of, category_choices
from taxonomy.models import Category

TRAIN_FILE, VALIDATION_FILE = "train.jsonl", "validation.jsonl"
GOLD_CONFIDENCE = 1.0
BATCH = 500


def finetune_split(*, recipe_id: int, validation_share: float) -> str:
    """ "validation" for about `validation_share` of recipe ids, "train" for the others; the same recipe always
    lands on the same side for a given share."""
    digest = hashlib.sha256(f"finetune:{recipe_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "validation" if position < validation_share else "train"


def finetune_recipes(*, include_imported: bool = False) -> QuerySet[Recipe]:
    """Recipes with review gold labels (and, with `include_imported`, imported ones), by id."""
    sources = [GoldLabelSource.REVIEW, GoldLabelSource.IMPORT] if include_imported else [GoldLabelSource.REVIEW]
    labelled = GoldLabel.objects.filter(source__in=sources).values("recipe_id")
    return Recipe.objects.filter(pk__in=labelled).defer("embedding").order_by("id")


@dataclass
class FinetuneExport:
    train: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)
    prompt_version: str = ""
    # Why recipes or labels were left out, and how many: over_k, inactive_labels, no_active_labels.
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def recipes(self) -> int:
        return len(self.train) + len(self.validation)


@dataclass(frozen=True)
class _Taxonomy:
    requests: dict[str, CategoryRequest]  # active category slug -> request at its default k
    choices: dict[str, CategoryChoice]  # the same categories as the llm strategy offers them


def _taxonomy() -> _Taxonomy:
    categories = Category.objects.filter(active=True).order_by("position", "name", "id")
    requests = [CategoryRequest(category=c, k=c.default_max_tags, threshold=0.0) for c in categories]
    choices = category_choices(requests, active_tags_of(requests))
    return _Taxonomy(
        requests={r.category.slug: r for r in requests},
        choices={choice.slug: choice for choice in choices},
    )


def finetune_line(
    *, text: RecipeText, labels: dict[str, set[str]], choices: list[CategoryChoice], prompt: PromptTemplates
) -> str:
    """One training line: the llm strategy's question about `text` over `choices`, answered with `labels`
    (category slug -> tag slugs, each offered by its choice and at most its k)."""
    system, user = prompt_messages(recipe=text, categories=choices, templates=prompt)
    answer = {
        choice.slug: [
            {"tag": tag.slug, "reason": "", "confidence": GOLD_CONFIDENCE}
            for tag in choice.tags
            if tag.slug in labels.get(choice.slug, set())
        ]
        for choice in choices
    }
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)},
    ]
    return json.dumps({"messages": messages}, ensure_ascii=False)


def _labels_of(recipe_ids: list[int]) -> dict[int, dict[str, set[str]]]:
    rows = GoldLabel.objects.filter(recipe_id__in=recipe_ids).values_list(
        "recipe_id", "tag__category__slug", "tag__slug", "tag__active", "tag__category__active"
    )
    labels: dict[int, dict[str, set[str]]] = {}
    for recipe_id, category, slug, active, category_active in rows.order_by("recipe_id", "id"):
        key = category if active and category_active else ""
        labels.setdefault(recipe_id, {}).setdefault(key, set()).add(slug)
    return labels


def _batches(recipes: QuerySet[Recipe]) -> Iterator[list[Recipe]]:
    batch: list[Recipe] = []
    for recipe in recipes.iterator(chunk_size=BATCH):
        batch.append(recipe)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def finetune_export_build(*, recipes: Iterable[Recipe] | QuerySet[Recipe], validation_share: float) -> FinetuneExport:
    """The lines of `recipes` (their gold labels from every source), split into train and validation."""
    if not 0 <= validation_share < 1:
        raise ValueError("the validation share must be at least 0 and below 1")
    prompt = prompt_version_active()
    taxonomy = _taxonomy()
    export = FinetuneExport(prompt_version=prompt.label)
    queryset = recipes if isinstance(recipes, QuerySet) else Recipe.objects.filter(pk__in=[r.pk for r in recipes])
    for batch in _batches(queryset.defer("embedding").order_by("id")):
        labels = _labels_of([r.pk for r in batch])
        for recipe in batch:
            by_category = labels.get(recipe.pk, {})
            export.skipped["inactive_labels"] += len(by_category.pop("", set()))
            # A category the llm strategy would not offer (no active tag) cannot be asked about.
            by_category = {slug: tags for slug, tags in by_category.items() if slug in taxonomy.choices}
            if not by_category:
                export.skipped["no_active_labels"] += 1
                continue
            choices = [choice for slug, choice in taxonomy.choices.items() if slug in by_category]
            if any(len(by_category[c.slug]) > c.k for c in choices):
                export.skipped["over_k"] += 1
                continue
            line = finetune_line(text=recipe.text, labels=by_category, choices=choices, prompt=prompt)
            side = finetune_split(recipe_id=recipe.pk, validation_share=validation_share)
            (export.validation if side == "validation" else export.train).append(line)
    return export


def finetune_export_write(*, export: FinetuneExport, output_dir: Path) -> tuple[Path, Path]:
    """Write train.jsonl and validation.jsonl into `output_dir` (made if missing); returns their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = (output_dir / TRAIN_FILE, output_dir / VALIDATION_FILE)
    for path, lines in zip(paths, (export.train, export.validation), strict=True):
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return paths
