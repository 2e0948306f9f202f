from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from autotagger.embeddings import EmbeddingError, EmbeddingMode, embedding_fast_distill, embedding_model_name


class Command(BaseCommand):
    help = (
        "Distil the configured local embedding model into the fast mode's static model2vec model (in the data "
        "folder; nothing is downloaded). Does nothing when it is already there, unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Distil again even if the model is there.")
        parser.add_argument(
            "--vocabulary-size",
            type=int,
            help="Keep only the tokenizer's first N tokens (quicker to distil, worse on rarer words; default: all).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            path, seconds = embedding_fast_distill(force=options["force"], vocabulary_size=options["vocabulary_size"])
        except EmbeddingError as exc:
            raise CommandError(str(exc)) from exc
        name = embedding_model_name(mode=EmbeddingMode.FAST)
        if seconds:
            self.stdout.write(self.style.SUCCESS(f"Distilled {name} into {path} in {seconds:.1f}s."))
        else:
            self.stdout.write(self.style.SUCCESS(f"{name} is already in {path} (--force distils it again)."))
