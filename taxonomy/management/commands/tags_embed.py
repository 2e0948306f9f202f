from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from taxonomy.embedding import tags_embed
from taxonomy.models import Tag


class Command(BaseCommand):
    help = "Compute embeddings for tags that have none or were embedded by another model (--all: every tag)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="Re-embed every tag.")

    def handle(self, *args: Any, **options: Any) -> None:
        ids = list(Tag.objects.order_by("id").values_list("id", flat=True)) if options["all"] else None
        count = tags_embed(tag_ids=ids)
        self.stdout.write(self.style.SUCCESS(f"Embedded {count} tags."))
