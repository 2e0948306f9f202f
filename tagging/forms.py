from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django import forms
from django.db.models import QuerySet

from autotagger.recipe_text import RecipeText
from prompts.models import PromptVersion
from prompts.rendering import template_problems
from tagging.models import Recipe, Strategy
from tagging.selectors import recipe_get
from tagging.services.config import TaggingConfig
from taxonomy.limits import MAX_TAGS_PER_CATEGORY
from taxonomy.models import Category


class RecipeTagForm(forms.Form):
    """A recipe typed or pasted into the dashboard, and how to tag it."""

    title = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    ingredients = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text="One ingredient per line.",
    )
    instructions = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8}))
    strategy = forms.ChoiceField(
        choices=Strategy.choices,
        initial=Strategy.SIMILARITY,
        help_text="LLM and hybrid need a language model configured for this deployment.",
    )
    k = forms.IntegerField(
        label="Tags per category (k)",
        required=False,
        min_value=1,
        max_value=MAX_TAGS_PER_CATEGORY,
        help_text="Leave blank to use each category's default.",
    )
    categories = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked means all categories.",
    )

    def __init__(self, *args: Any, categories: Iterable[Category], **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        field = self.fields["categories"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(c.slug, c.name) for c in categories]

    def clean_ingredients(self) -> list[str]:
        text: str = self.cleaned_data["ingredients"]
        return [line.strip() for line in text.splitlines() if line.strip()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "ingredients" in cleaned and not cleaned["ingredients"] and not cleaned.get("instructions"):
            # The database refuses a recipe with neither; say so here rather than fail on insert.
            self.add_error("ingredients", "Give at least one ingredient or the instructions.")
        return cleaned

    def tagging_config(self) -> TaggingConfig:
        selected = self.cleaned_data["categories"]
        return TaggingConfig(
            strategy=self.cleaned_data["strategy"],
            k=self.cleaned_data["k"],
            categories=tuple(selected) if selected else None,
        )


class PromptPlaygroundForm(forms.Form):
    """A draft of a tagging prompt, the source, categories and k to try it with, and the recipe: a stored one by
    id, or one pasted in. `version` is the version the draft started from (the parent of a saved draft)."""

    version = forms.ModelChoiceField(
        queryset=PromptVersion.objects.none(),
        required=False,
        label="Started from",
        help_text="The version the draft was edited from; a saved draft becomes its child.",
    )
    system_template = forms.CharField(
        strip=False, widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}), label="System template"
    )
    user_template = forms.CharField(
        strip=False, widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}), label="User template"
    )
    source = forms.ChoiceField(label="Model source", required=False, help_text="Needed to run, not to save.")
    k = forms.IntegerField(
        label="Tags per category (k)",
        required=False,
        min_value=1,
        max_value=MAX_TAGS_PER_CATEGORY,
        help_text="Leave blank to use each category's default.",
    )
    categories = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None checked means all categories."
    )
    recipe = forms.IntegerField(
        label="Stored recipe id", required=False, min_value=1, help_text="Or paste a recipe below."
    )
    title = forms.CharField(max_length=500, required=False, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    ingredients = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}), help_text="One per line."
    )
    instructions = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}))
    notes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What changed and why, saved with the new version.",
    )

    def __init__(
        self,
        *args: Any,
        versions: QuerySet[PromptVersion],
        sources: Sequence[str],
        categories: Iterable[Category],
        user: Any,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.user = user
        version_field = self.fields["version"]
        assert isinstance(version_field, forms.ModelChoiceField)
        version_field.queryset = versions
        source_field = self.fields["source"]
        assert isinstance(source_field, forms.ChoiceField)
        source_field.choices = [(name, name) for name in sources]
        category_field = self.fields["categories"]
        assert isinstance(category_field, forms.MultipleChoiceField)
        category_field.choices = [(c.slug, c.name) for c in categories]

    def clean_ingredients(self) -> list[str]:
        text: str = self.cleaned_data["ingredients"]
        return [line.strip() for line in text.splitlines() if line.strip()]

    def clean_recipe(self) -> Recipe | None:
        recipe_id = self.cleaned_data["recipe"]
        if recipe_id is None:
            return None
        recipe = recipe_get(recipe_id=recipe_id, user=self.user)
        if recipe is None:
            raise forms.ValidationError(f"There is no recipe {recipe_id} you may read.")
        return recipe

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for field_name, problems in template_problems(
            system_template=cleaned.get("system_template", ""), user_template=cleaned.get("user_template", "")
        ).items():
            if field_name in cleaned:
                for problem in problems:
                    self.add_error(field_name, problem)
        return cleaned

    def recipe_text(self) -> RecipeText | None:
        """The recipe to try the prompts on; None (with form errors) when there is none, or no source to ask."""
        if not self.cleaned_data["source"]:
            self.add_error("source", "Choose a model source to run with (staff add them in admin, LLM sources).")
            return None
        recipe: Recipe | None = self.cleaned_data["recipe"]
        if recipe is not None:
            return recipe.text
        title = self.cleaned_data["title"].strip()
        ingredients, instructions = self.cleaned_data["ingredients"], self.cleaned_data["instructions"].strip()
        if not title or not (ingredients or instructions):
            self.add_error(
                "recipe", "Give a stored recipe's id, or a title with at least one ingredient or the instructions."
            )
            return None
        return RecipeText(title=title, ingredients=ingredients, instructions=instructions)
