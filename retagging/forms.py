"""The form staff start a re-tagging job with: what to select, how to tag, dry run or apply."""

from __future__ import annotations

from typing import Any

from django import forms

from retagging.models import SelectionKind
from tagging.models import Strategy
from tagging.staleness import STALE_CAUSE_LABELS
from taxonomy.limits import MAX_TAGS_PER_CATEGORY
from taxonomy.models import Category


class RetagJobForm(forms.Form):
    kind = forms.ChoiceField(label="Recipes", choices=SelectionKind.choices, initial=SelectionKind.STALE)
    value = forms.CharField(
        label="Which",
        required=False,
        help_text="The category slug, the tag (category/slug), the source, or the date (YYYY-MM-DD) the "
        "selection needs; empty for all and stale.",
    )
    causes = forms.MultipleChoiceField(
        label="Staleness causes",
        required=False,
        choices=list(STALE_CAUSE_LABELS.items()),
        widget=forms.CheckboxSelectMultiple,
        help_text="For stale recipes: the causes to select (none checked: any cause).",
    )
    strategy = forms.ChoiceField(choices=Strategy.choices, initial=Strategy.SIMILARITY)
    categories = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Re-tag only these; the others keep their current tags. None checked: every active category.",
    )
    k = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_TAGS_PER_CATEGORY, help_text="Tags per category (empty: default)."
    )
    threshold = forms.FloatField(required=False, min_value=0, max_value=1)
    source = forms.CharField(required=False, help_text="The LLM source for llm and hybrid (empty: the default).")
    dry_run = forms.BooleanField(
        required=False, initial=True, help_text="Store the new tags for review without changing current tags."
    )
    use_batch = forms.BooleanField(
        required=False, label="Use the Batch API", help_text="llm and hybrid only: half price, results within 24 h."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        categories = self.fields["categories"]
        assert isinstance(categories, forms.MultipleChoiceField)
        categories.choices = list(
            Category.objects.filter(active=True).order_by("position", "name", "id").values_list("slug", "name")
        )

    def job_arguments(self) -> dict[str, Any]:
        """The arguments of retag_job_create, from the cleaned data."""
        data = self.cleaned_data
        selection: dict[str, Any] = {"kind": data["kind"]}
        if data["value"]:
            selection["value"] = data["value"]
        if data["causes"]:
            selection["causes"] = list(data["causes"])
        config = {key: data[key] for key in ("k", "threshold", "source") if data[key] not in (None, "")} | (
            {"categories": list(data["categories"])} if data["categories"] else {}
        )
        return {
            "selection": selection,
            "strategy": data["strategy"],
            "config": config,
            "dry_run": data["dry_run"],
            "use_batch": data["use_batch"],
        }
