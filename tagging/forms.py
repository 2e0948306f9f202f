from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms

from tagging.models import Strategy
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
