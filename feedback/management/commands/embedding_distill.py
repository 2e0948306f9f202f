from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from autotagger.embeddings import EmbeddingError, EmbeddingMode, embedding_fast_distill, embedding_model_name
from feedback.training import fast_mode_refresh


class Command(BaseCommand):
    help = (
        "Distil the configured local embedding model into the fast mode's static model2vec model (in the data "
        "folder; nothing is downloaded). Does nothing when it is already there, unless --force. A new model gets "
        "its own learned tagger state at once when there are gold labels."
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
            state = fast_mode_refresh()
            if state is not None:
                self.stdout.write(f"Fitted the fast mode's tagger state #{state.pk} on the gold labels.")
        else:
            self.stdout.write(self.style.SUCCESS(f"{name} is already in {path} (--force distils it again)."))
