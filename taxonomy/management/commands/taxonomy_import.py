from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from taxonomy.models import Category
from taxonomy.services.changes import TaxonomyError
from taxonomy.services.documents import taxonomy_import

DEFAULT_TAXONOMY = Path(__file__).resolve().parent.parent.parent / "data" / "default_taxonomy.json"


class Command(BaseCommand):
    help = "Create or update categories and tags from a taxonomy JSON file (matched by slug; nothing is deleted)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", help="Taxonomy JSON file; omit with --default.")
        parser.add_argument("--default", action="store_true", help="Load the default recipe taxonomy.")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the database already has categories (so staff edits are never overwritten).",
        )
        parser.add_argument(
            "--embed-now",
            action="store_true",
            help="Compute tag embeddings in this process instead of queueing them for the worker.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["default"] == bool(options["path"]):
            raise CommandError("Give a PATH or --default (one of the two).")
        if options["if_empty"] and Category.objects.exists():
            self.stdout.write("The taxonomy is not empty; nothing imported (--if-empty).")
            return
        path = DEFAULT_TAXONOMY if options["default"] else Path(options["path"])
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise CommandError(f"No such file: {path}") from exc
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise CommandError(f"{path} is not valid JSON: {exc}") from exc
        try:
            result = taxonomy_import(data=data, embed_now=options["embed_now"])
        except TaxonomyError as exc:
            raise CommandError(f"{path}: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Taxonomy from {path.name}: {result.categories_created} categories created, "
                f"{result.categories_updated} updated; {result.tags_created} tags created, "
                f"{result.tags_updated} updated; {result.ingredient_groups_created} ingredient groups created, "
                f"{result.ingredient_groups_updated} updated"
                + ("; embeddings computed." if options["embed_now"] else "; embeddings queued for the worker.")
            )
        )
