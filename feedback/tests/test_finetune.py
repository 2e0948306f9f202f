"""feedback.finetune: reviewed recipes as OpenAI chat fine-tuning lines, the llm strategy's question answered with
the gold labels; the train/validation split; the export_finetune command and the admin action on recipes."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from feedback.finetune import finetune_export_build, finetune_recipes, finetune_split
from feedback.models import GoldLabelSource
from feedback.tests.conftest import GoldLabelFactory
from prompts.models import Prompt
from prompts.rendering import CategoryChoice, prompt_messages, reply_validate
from prompts.selectors import prompt_version_active
from prompts.services import prompt_version_activate, prompt_version_create
from tagging.models import Recipe
from tagging.taggers.base import CategoryRequest
from tagging.taggers.llm import active_tags_of, category_choices
from tagging.tests.conftest import RecipeFactory
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    cuisine.default_max_tags = 2
    cuisine.save(update_fields=["default_max_tags"])
    diet = CategoryFactory(slug="diet", position=2, default_max_tags=2)
    CategoryFactory(slug="occasion", position=3)  # no label: never asked about
    # Italian and Mexican come with the cuisine fixture.
    return {tag.slug: tag for tag in cuisine.tags.all()} | {
        slug: TagFactory(category=category, slug=slug, description=f"{slug} food")
        for category, slug in [(cuisine, "greek"), (diet, "vegetarian"), (diet, "vegan")]
    }


def label(recipe: Recipe, tag: Tag, source: str = GoldLabelSource.REVIEW) -> None:
    GoldLabelFactory(recipe=recipe, tag=tag, source=source)


def choices_for(*slugs: str) -> list[CategoryChoice]:
    """The categories as the llm strategy offers them, from its own code."""
    categories = Category.objects.filter(slug__in=slugs).order_by("position", "name", "id")
    requests = [CategoryRequest(category=c, k=c.default_max_tags, threshold=0.0) for c in categories]
    return category_choices(requests, active_tags_of(requests))


def lines(share: float = 0.0, **kwargs: Any) -> list[dict[str, Any]]:
    export = finetune_export_build(recipes=finetune_recipes(**kwargs), validation_share=share)
    return [json.loads(line) for line in [*export.train, *export.validation]]


def test_each_line_is_the_llm_strategys_question_and_an_answer_its_parser_reads_as_the_gold_labels(
    tags: dict[str, Tag],
) -> None:
    recipe = RecipeFactory(title="Margherita", ingredients=["dough", "tomato", "mozzarella"], instructions="Bake.")
    for slug in ("italian", "greek", "vegetarian"):
        label(recipe, tags[slug])

    (line,) = lines()

    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
    choices = choices_for("cuisine", "diet")
    system, user = prompt_messages(recipe=recipe.text, categories=choices, templates=prompt_version_active())
    assert line["messages"][0]["content"] == system
    assert line["messages"][1]["content"] == user
    assert "Margherita" in user
    validated = reply_validate(data=json.loads(line["messages"][2]["content"]), categories=choices)
    assert {c: set(s) for c, s in validated.tags.items()} == {"cuisine": {"italian", "greek"}, "diet": {"vegetarian"}}
    assert validated.unknown_dropped == validated.over_k_dropped == validated.duplicates_dropped == 0


def test_it_renders_with_the_active_tagging_prompt(tags: dict[str, Tag], staff: Any) -> None:
    recipe = RecipeFactory()
    label(recipe, tags["italian"])
    prompt = Prompt.objects.get(name="tagging-default")
    version = prompt_version_create(
        prompt=prompt,
        system_template="Tag recipes for the fine-tuned model. Keys: $keys.",
        user_template="$categories\n\n$recipe",
        author=staff,
    )
    prompt_version_activate(version=version, actor=staff)

    (line,) = lines()

    assert line["messages"][0]["content"] == 'Tag recipes for the fine-tuned model. Keys: "cuisine".'
    export = finetune_export_build(recipes=finetune_recipes(), validation_share=0.0)
    assert export.prompt_version == version.label


def test_it_exports_reviewed_recipes_and_imported_ones_only_when_asked(tags: dict[str, Tag]) -> None:
    reviewed, imported, unlabelled = RecipeFactory(title="Reviewed"), RecipeFactory(title="Imported"), RecipeFactory()
    label(reviewed, tags["italian"])
    label(imported, tags["mexican"], source=GoldLabelSource.IMPORT)

    default = lines()
    everything = lines(include_imported=True)

    def titles(found: list[dict[str, Any]]) -> set[str]:
        return {next(t for t in ("Reviewed", "Imported") if t in line["messages"][1]["content"]) for line in found}

    assert titles(default) == {"Reviewed"}
    assert titles(everything) == {"Reviewed", "Imported"}
    assert unlabelled.pk not in set(finetune_recipes(include_imported=True).values_list("id", flat=True))


def test_it_leaves_out_recipes_with_more_labels_than_k_and_labels_of_inactive_tags(tags: dict[str, Tag]) -> None:
    crowded, retired = RecipeFactory(title="Crowded"), RecipeFactory(title="Retired")
    for slug in ("italian", "mexican", "greek"):
        label(crowded, tags[slug])
    label(retired, tags["vegan"])
    label(retired, tags["italian"])
    tags["vegan"].active = False
    tags["vegan"].save(update_fields=["active"])

    export = finetune_export_build(recipes=finetune_recipes(), validation_share=0.0)

    assert export.recipes == 1
    assert export.skipped == {"over_k": 1, "inactive_labels": 1}
    answer = json.loads(json.loads(export.train[0])["messages"][2]["content"])
    assert answer == {"cuisine": [{"tag": "italian", "reason": "", "confidence": 1.0}]}


def test_the_split_is_a_stable_hash_of_the_recipe_id_near_the_share_asked() -> None:
    ids = range(1, 10_001)

    at_10 = {i for i in ids if finetune_split(recipe_id=i, validation_share=0.1) == "validation"}
    again = {i for i in ids if finetune_split(recipe_id=i, validation_share=0.1) == "validation"}
    at_20 = {i for i in ids if finetune_split(recipe_id=i, validation_share=0.2) == "validation"}

    assert at_10 == again
    assert 900 <= len(at_10) <= 1100
    assert 1800 <= len(at_20) <= 2200
    assert at_10 <= at_20  # a larger share only moves recipes from train to validation
    assert {finetune_split(recipe_id=i, validation_share=0.0) for i in ids} == {"train"}


def test_the_same_recipes_land_on_the_same_side_from_one_export_to_the_next(tags: dict[str, Tag]) -> None:
    recipes = [RecipeFactory(title=f"Dish {n}") for n in range(40)]
    for recipe in recipes:
        label(recipe, tags["italian"])

    first = finetune_export_build(recipes=finetune_recipes(), validation_share=0.3)
    second = finetune_export_build(recipes=finetune_recipes(), validation_share=0.3)

    assert first.validation == second.validation
    assert first.train == second.train
    assert first.validation
    assert first.train
    expected = {r.title for r in recipes if finetune_split(recipe_id=r.pk, validation_share=0.3) == "validation"}
    shown = {json.loads(line)["messages"][1]["content"] for line in first.validation}
    assert {t for t in expected if any(f"Title: {t}\n" in s for s in shown)} == expected


def test_the_command_writes_train_and_validation_files(tags: dict[str, Tag], tmp_path: Path) -> None:
    recipes = [RecipeFactory(title=f"Dish {n}") for n in range(30)]
    for recipe in recipes:
        label(recipe, tags["italian"])
    out = io.StringIO()

    call_command("export_finetune", "--output", str(tmp_path / "ft"), "--validation-share", "0.2", stdout=out)

    train = (tmp_path / "ft" / "train.jsonl").read_text().splitlines()
    validation = (tmp_path / "ft" / "validation.jsonl").read_text().splitlines()
    assert len(train) + len(validation) == 30
    expected = sum(finetune_split(recipe_id=r.pk, validation_share=0.2) == "validation" for r in recipes)
    assert len(validation) == expected
    assert all(json.loads(line)["messages"][2]["role"] == "assistant" for line in train + validation)
    assert "30 recipes" in out.getvalue()


def test_the_command_refuses_a_share_outside_0_to_1(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="share"):
        call_command("export_finetune", "--output", str(tmp_path), "--validation-share", "1.5")


def test_the_admin_action_downloads_the_selected_recipes_as_a_zip(tags: dict[str, Tag], staff_browser: Client) -> None:
    chosen, other = RecipeFactory(title="Chosen"), RecipeFactory(title="Other")
    label(chosen, tags["italian"])
    label(other, tags["mexican"])

    response = staff_browser.post(
        "/admin/tagging/recipe/", {"action": "export_finetune", "_selected_action": [chosen.pk]}
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["train.jsonl", "validation.jsonl"]
        found = (
            archive.read("train.jsonl").decode().splitlines() + archive.read("validation.jsonl").decode().splitlines()
        )
    assert len(found) == 1
    assert "Title: Chosen" in json.loads(found[0])["messages"][1]["content"]


def test_the_admin_action_says_so_when_nothing_selected_is_labelled(
    tags: dict[str, Tag], staff_browser: Client
) -> None:
    bare = RecipeFactory(title="Bare")

    response = staff_browser.post(
        "/admin/tagging/recipe/", {"action": "export_finetune", "_selected_action": [bare.pk]}, follow=True
    )

    assert response.status_code == 200
    assert "nothing to export" in response.content.decode()
