from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.evaluation import replay
from feedback.services.learning_curves import GOLD_LABELS, learning_curve_from_gold_labels
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY, MAX_TAGS_PER_CATEGORY


def _seeds(value: str) -> list[int]:
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError as exc:
        raise CommandError(f"--seeds takes whole numbers separated by commas, not {value!r}.") from exc


class Command(BaseCommand):
    help = (
        "Replay this instance's gold-labelled recipes as if reviewers corrected them a batch at a time, least "
        "sure first and in random order, refitting the tagger after each batch; print micro-F1 on a held-out "
        "part after each batch and store the curve for the feedback page (/feedback/)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=replay.DEFAULT_BATCH, help="reviews per batch")
        parser.add_argument("--limit", type=int, default=replay.DEFAULT_LIMIT, help="reviews in all")
        parser.add_argument("--seeds", default=",".join(map(str, replay.DEFAULT_SEEDS)), help="random orders")
        parser.add_argument(
            "--aggregate",
            choices=["mean", "min"],
            default=replay.DEFAULT_MARGIN_AGGREGATE,
            help="margin across categories",
        )
        parser.add_argument(
            "--acquisition",
            choices=replay.ACQUISITIONS,
            default=replay.DEFAULT_ACQUISITION,
            help="how the least sure recipes are chosen",
        )
        parser.add_argument("--diverse", action="store_true", help="skip near-copies within an uncertainty batch")
        parser.add_argument("--cv-folds", type=int, default=replay.DEFAULT_CV_FOLDS, help="0 skips the CV F1")
        parser.add_argument("--k", type=int, default=DEFAULT_TAGS_PER_CATEGORY, help="tags per category")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["k"] <= MAX_TAGS_PER_CATEGORY:
            raise CommandError(f"--k must be between 1 and {MAX_TAGS_PER_CATEGORY}, not {options['k']}.")
        try:
            stored = learning_curve_from_gold_labels(
                k=options["k"],
                batch=options["batch"],
                limit=options["limit"],
                seeds=_seeds(options["seeds"]),
                aggregate=options["aggregate"],
                diverse=options["diverse"],
                acquisition=options["acquisition"],
                cv_folds=options["cv_folds"],
                progress=lambda message: self.stderr.write(message),
            )
        except replay.ReplayError as exc:
            raise CommandError(str(exc)) from exc
        curve = replay.LearningCurveResult.from_json(stored.result)
        for line in replay.learning_curve_report(curve, name=GOLD_LABELS):
            self.stdout.write(line)
        self.stdout.write(f"Stored as learning curve {stored.pk}: see /feedback/")
