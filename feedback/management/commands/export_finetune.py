from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.finetune import finetune_export_build, finetune_export_write, finetune_recipes


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share from 0 up to (not including) 1")
    return value


class Command(BaseCommand):
    help = (
        "Write reviewed recipes as OpenAI chat fine-tuning data: train.jsonl and validation.jsonl in --output, "
        "each line the llm strategy's question (the active tagging prompt) answered with the recipe's gold labels."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", required=True, type=Path, help="The folder to write the two files into.")
        parser.add_argument(
            "--validation-share",
            type=_share,
            default=0.1,
            help="Share of recipes in validation.jsonl, by a hash of the recipe id (default 0.1).",
        )
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--reviewed-only",
            action="store_true",
            help="Only recipes people reviewed (with review gold labels): the default.",
        )
        which.add_argument(
            "--include-imported", action="store_true", help="Also recipes labelled by an imported dataset."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output: Path = options["output"]
        if output.exists() and not output.is_dir():
            raise CommandError(f"{output} is a file, not a folder.")
        recipes = finetune_recipes(include_imported=options["include_imported"])
        export = finetune_export_build(recipes=recipes, validation_share=options["validation_share"])
        train, validation = finetune_export_write(export=export, output_dir=output)
        self.stdout.write(
            self.style.SUCCESS(
                f"{export.recipes} recipes with the prompt {export.prompt_version}: {len(export.train)} in {train}, "
                f"{len(export.validation)} in {validation}."
            )
        )
        reasons = {
            "over_k": "recipes left out: more labels in a category than its k",
            "no_active_labels": "recipes left out: no label of an active tag",
            "inactive_labels": "labels left out: inactive tag or category",
        }
        for key, text in reasons.items():
            if export.skipped[key]:
                self.stdout.write(f"  {export.skipped[key]} {text}")
