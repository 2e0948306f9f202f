from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.models import GoldLabel
from feedback.services.imports import recipes_import
from feedback.training import tagger_fit
from tagging.models import Recipe

STARTER_RECIPES = Path(__file__).resolve().parent.parent.parent / "data" / "starter_recipes.jsonl"
SOURCE = "starter"


class Command(BaseCommand):
    help = (
        "Load the labelled starter recipes (feedback/data/starter_recipes.jsonl) into an empty database and fit "
        "the learned tagger on them, so that it knows something from the first start. A database that has "
        "recipes or gold labels already is left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--path",
            default=str(STARTER_RECIPES),
            help="The JSON-lines file to load (the starter set that ships with the default taxonomy by default).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"The starter set {path} does not exist.")
        # Only into an empty database: the starter labels must never mix with what staff labelled, nor come
        # back after staff deleted them.
        recipes, labels = Recipe.objects.count(), GoldLabel.objects.count()
        if recipes or labels:
            self.stdout.write(
                f"Starter set skipped: the database is not empty ({recipes} recipes, {labels} gold labels)."
            )
            return
        with path.open("rb") as lines:
            report = recipes_import(lines=lines, source=SOURCE, labeled=True, create_taxonomy=False, mapping=None)
        self.stdout.write(
            f"Starter set: {report.created} recipes and {report.labels} gold labels loaded from {path.name}."
        )
        for line, message in report.errors:
            self.stderr.write(f"  line {line}: {message}")
        for category, names in sorted(report.unmapped.items()):
            self.stderr.write(f"  not in the taxonomy: {category}: {', '.join(sorted(names))}")
        state = tagger_fit()
        if state is None:
            self.stdout.write("No gold labels were loaded: the tagger stays zero-shot.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Tagger state {state.pk} fitted on {state.fitted_on['labelled_recipes']} labelled recipes "
                f"({len(state.parameters)} categories) in {state.duration_seconds:.1f}s."
            )
        )
