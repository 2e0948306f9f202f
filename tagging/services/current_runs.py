"""A recipe's current tags: an explicit pointer to one succeeded run (its gold labels win in their categories),
moved when a run succeeds (unless it was a dry run, `sets_current=False`), and moved by re-tagging jobs when
they are applied or rolled back."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Q

from autotagger.bulk_updates import rows_update
from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.services.config import TaggingError


class NotACurrentRun(TaggingError):
    """Only a succeeded run of the recipe itself can be its current tags."""

    code = "not_a_current_run"
    status = 409


def recipe_current_run_set(*, recipe: Recipe, run: TaggingRun | None) -> None:
    """Make `run` (a succeeded run of `recipe`; None: no current tags) the recipe's current tags, whatever it
    pointed at before: how a re-tagging job is applied to one recipe and rolled back."""
    if run is not None and (run.recipe_id != recipe.pk or run.status != RunStatus.SUCCEEDED):
        raise NotACurrentRun(
            f"Run {run.pk} is not a succeeded run of recipe {recipe.pk}.",
            details={"run": run.pk, "recipe": recipe.pk, "status": run.status},
        )
    Recipe.objects.filter(pk=recipe.pk).update(current_run=run)
    recipe.current_run = run


def recipes_current_run_set(*, runs: Sequence[TaggingRun], only_newer: bool = False) -> int:
    """Make each of `runs` (succeeded) its recipe's current tags, a few queries for thousands; returns how many
    pointers moved. With `only_newer`, a recipe whose current run is newer (a higher id: asked for later)
    keeps it: a run that finished late never replaces the tags of one asked for after it."""
    succeeded = [run for run in runs if run.status == RunStatus.SUCCEEDED]
    if len(succeeded) != len(runs):
        failed = [run.pk for run in runs if run.status != RunStatus.SUCCEEDED]
        raise NotACurrentRun(f"Runs {failed[:20]} have not succeeded.", details={"runs": failed})
    # One run per recipe, the newest (what applying them one by one in id order would leave).
    newest = {run.recipe_id: run.pk for run in sorted(succeeded, key=lambda run: run.pk)}
    condition = "t.current_run_id IS NULL OR t.current_run_id < v.current_run_id" if only_newer else ""
    # One statement per ROWS_PER_STATEMENT recipes (rows_update): a CASE branch and a Q per recipe made
    # Django compile thousands of expressions for a bulk pass.
    return len(rows_update(model=Recipe, fields=["current_run"], rows=list(newest.items()), condition=condition))


def run_current_advance(*, run: TaggingRun) -> None:
    """Within the transaction that stores `run`'s success: it becomes its recipe's current tags, unless it is a
    dry run or a run asked for later already did (see recipes_current_run_set)."""
    if not run.sets_current:
        return
    newer = Q(current_run__isnull=True) | Q(current_run_id__lt=run.pk)
    if Recipe.objects.filter(newer, pk=run.recipe_id).update(current_run=run):
        run.recipe.current_run = run
