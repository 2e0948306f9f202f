from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.evaluation.datasets import DatasetError
from feedback.evaluation.metrics import BOOTSTRAP_RESAMPLES
from feedback.models import EvaluationRun
from feedback.services.evaluation import EvaluationError, evaluation_run
from tagging.models import Strategy
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY, MAX_TAGS_PER_CATEGORY

# Marks a category where the tagger's F1 is above every baseline's.
BEATS_ALL = "*"
# The targets: the tagger beats the best baseline in categories with at least this many labelled recipes,
# and its expected calibration error is at most MAX_ECE in categories with at least CALIBRATION_SUPPORT.
QUALITY_SUPPORT = 50
CALIBRATION_SUPPORT = 200
MAX_ECE = 0.05


def _categories(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _file(value: str | None, *, option: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise CommandError(f"The {option} file {value} does not exist.")
    return path


def _table(rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers, two spaces between columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


def _report_lines(metrics: dict[str, Any]) -> list[str]:
    """The readable report of one run's metrics (EvaluationResult.as_json())."""
    baselines: dict[str, dict[str, dict[str, float]]] = metrics["baselines"]
    header = ["category", "support", "precision", "recall", "F1", "macro-F1", "coverage", *baselines]
    rows = [[*header, "beats all"] if baselines else header]
    for slug, values in metrics["categories"].items():
        baseline_f1 = [baselines[name][slug]["f1"] for name in baselines]
        beats_all = all(values["f1"] > f1 for f1 in baseline_f1)
        rows.append(
            [
                slug,
                str(values["support"]),
                *(f"{values[key]:.3f}" for key in ("precision", "recall", "f1", "macro_f1", "coverage")),
                *(f"{f1:.3f}" for f1 in baseline_f1),
                *([BEATS_ALL if beats_all else ""] if baselines else []),
            ]
        )
    overall, latency, adherence = metrics["overall"], metrics["latency_ms"], metrics["adherence"]
    return [
        *_head_lines(metrics, rows),
        "",
        *_comparison_lines(metrics),
        "",
        f"Overall micro-F1 {overall['f1']:.3f} (precision {overall['precision']:.3f}, recall {overall['recall']:.3f})",
        f"Latency per recipe: p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms",
        f"Adherence: {adherence['unknown_tags']} tags outside the taxonomy, "
        f"{adherence['over_k']} category answers with more than k tags",
    ]


def _comparison_lines(metrics: dict[str, Any]) -> list[str]:
    """Per category: the margin over the best baseline with its bootstrap interval, the calibration
    error, the precision floor, and whether each target is met (said plainly where it is not)."""
    comparison: dict[str, dict[str, Any]] = metrics.get("comparison", {})
    calibration: dict[str, dict[str, Any]] = metrics.get("calibration", {})
    floors: dict[str, float | None] = metrics.get("precision_floors", {})
    rows = [["category", "support", "best baseline", "its F1", "margin", "95% interval", "beats it", "ECE", "floor"]]
    missed = []
    for slug, values in metrics["categories"].items():
        support = values["support"]
        compared = comparison.get(slug)
        ece = calibration.get(slug, {}).get("ece")
        if compared:
            lower, upper = compared["interval_95"]
            beaten = compared["margin"] > 0
            verdict = "yes" if beaten else "NO"
            if not beaten and support >= QUALITY_SUPPORT:
                missed.append(f"{slug}: F1 {compared['margin']:+.3f} against {compared['best_baseline']}")
        floor = floors.get(slug)
        if ece is not None and support >= CALIBRATION_SUPPORT and ece > MAX_ECE:
            missed.append(f"{slug}: ECE {ece:.3f} > {MAX_ECE}")
        rows.append(
            [
                slug,
                str(support),
                compared["best_baseline"] if compared else "-",
                f"{compared['baseline_f1']:.3f}" if compared else "-",
                f"{compared['margin']:+.3f}" if compared else "-",
                f"{lower:+.3f} to {upper:+.3f}" if compared else "-",
                verdict if compared else "-",
                f"{ece:.3f}" if ece is not None else "-",
                f"{floor:.2f}" if floor is not None else "none",
            ]
        )
    population = next(iter(calibration.values()), {}).get("population")
    scored = "each recipe's top k tags" if population == "top_k" else "the returned tags"
    return [
        *_table(rows),
        f"(margin: the tagger's F1 minus the best baseline's, each baseline tuned for its own best F1 by inner "
        f"folds; interval: {BOOTSTRAP_RESAMPLES} bootstrap resamples of the recipes; ECE: expected calibration "
        f"error of {scored}, 10 bins.)",
        f"Targets missed (beat the best baseline with >= {QUALITY_SUPPORT} labelled recipes, ECE <= {MAX_ECE} "
        f"with >= {CALIBRATION_SUPPORT}): " + ("; ".join(missed) if missed else "none"),
    ]


def _head_lines(metrics: dict[str, Any], rows: list[list[str]]) -> list[str]:
    baselines = metrics["baselines"]
    return [
        f"{metrics['dataset']}: {metrics['recipes']} recipes, strategy {metrics['strategy']}, k={metrics['k']}",
        "",
        *_table(rows),
        f"({BEATS_ALL}: the tagger's F1 is above every baseline's; baseline columns are their F1.)"
        if baselines
        else "(No baselines: they learn from gold labels, and the database has none.)",
    ]


class Command(BaseCommand):
    help = (
        "Score a tagging strategy on a labelled JSONL dataset (see ../shared/datasets/README.md) against the "
        "reference baselines, and store the run. --folds cross-validates on the dataset; --train learns from "
        "another dataset; with neither, the tagger uses what the database holds and the file's tags are only "
        "compared."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The labelled .jsonl dataset to score.")
        parser.add_argument(
            "--strategy", choices=Strategy.values, default=Strategy.SIMILARITY, help="The tagging strategy."
        )
        parser.add_argument(
            "--k",
            type=int,
            default=DEFAULT_TAGS_PER_CATEGORY,
            help=f"Tags per category at most (1 to {MAX_TAGS_PER_CATEGORY}; default {DEFAULT_TAGS_PER_CATEGORY}).",
        )
        parser.add_argument(
            "--categories", metavar="A,B", help="Dataset categories to score, comma-separated (default: all)."
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--folds", type=int, help="Cross-validate with this many folds (by a hash of the id).")
        mode.add_argument("--train", metavar="TRAIN.jsonl", help="Learn from this labelled dataset instead.")
        parser.add_argument("--output", metavar="REPORT.json", help="Also write the metrics as JSON here.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = _file(options["path"], option="dataset")
        assert path is not None
        train_path = _file(options["train"], option="--train")
        output = Path(options["output"]) if options["output"] else None
        if output is not None and not output.parent.is_dir():
            # Checked first: finding out after a long evaluation would waste it.
            raise CommandError(f"The folder of --output {output} does not exist.")
        try:
            run = evaluation_run(
                path=path,
                k=options["k"],
                strategy=options["strategy"],
                categories=_categories(options["categories"]),
                folds=options["folds"],
                train_path=train_path,
                progress=lambda message: self.stderr.write(message),
            )
        except (EvaluationError, DatasetError) as exc:
            raise CommandError(str(exc)) from exc
        self._report(run)
        if output is not None:
            output.write_text(json.dumps(run.metrics, indent=2) + "\n")
            self.stderr.write(f"Wrote {output}")

    def _report(self, run: EvaluationRun) -> None:
        for line in _report_lines(run.metrics):
            self.stdout.write(line)
        stored = f"Stored evaluation run #{run.pk} ({run.duration_seconds:.1f}s, code {run.code_version})."
        self.stdout.write(self.style.SUCCESS(stored))
