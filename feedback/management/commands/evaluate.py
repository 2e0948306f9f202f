from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from autotagger.embeddings import EmbeddingMode, fast_model_available, fast_model_path
from feedback.dispatch import evaluation_job_enqueue_now
from feedback.evaluation.confidence import source_calibration_apply
from feedback.evaluation.datasets import DatasetError
from feedback.evaluation.errors import EvaluationError
from feedback.evaluation.jobs import (
    LLM_STRATEGIES,
    EvaluationJobBusy,
    evaluation_job_progress,
    evaluation_job_run_here,
    evaluation_job_start_from_file,
)
from feedback.evaluation.metrics import BOOTSTRAP_RESAMPLES
from feedback.evaluation.runner import embedding_comparison
from feedback.models import EvaluationJob, EvaluationJobStatus, EvaluationRun
from feedback.services.evaluation import evaluation_job_judge, evaluation_run
from prompts.sources import LLMError, llm_source_get
from tagging.models import Strategy
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY, MAX_TAGS_PER_CATEGORY

# Marks a category where the tagger's F1 is above every baseline's.
BEATS_ALL = "*"
# The targets: the tagger beats the best baseline in categories with at least this many labelled recipes,
# and its expected calibration error is at most MAX_ECE in categories with at least CALIBRATION_SUPPORT.
QUALITY_SUPPORT = 50
CALIBRATION_SUPPORT = 200
MAX_ECE = 0.05
# Following an evaluation job on the worker: how often, when to say that no worker took it, and how long.
POLL_SECONDS = 1.0
NO_WORKER_HINT = 30.0
WAIT_LIMIT_SECONDS = 24 * 3600


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
        *_llm_lines(metrics),
        *_judge_lines(metrics),
        f"Overall micro-F1 {overall['f1']:.3f} (precision {overall['precision']:.3f}, recall {overall['recall']:.3f})",
        f"Latency per recipe: p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms",
        f"Adherence: {adherence['unknown_tags']} tags outside the taxonomy, "
        f"{adherence['over_k']} category answers with more than k tags",
    ]


def _confidence_line(confidence: dict[str, Any]) -> str:
    if not confidence.get("pairs"):
        return "Stated confidence: the model stated none"
    if not confidence.get("table"):
        return (
            f"Stated confidence: {confidence['pairs']} tags, too few to calibrate (ECE {confidence['ece_stated']:.3f})"
        )
    return (
        f"Stated confidence on {confidence['pairs']} tags: ECE {confidence['ece_stated']:.3f} as stated, "
        f"{confidence['ece_calibrated']:.3f} calibrated (--calibrate gives the source this calibration)"
    )


def _llm_lines(metrics: dict[str, Any]) -> list[str]:
    """What the model cost and, for hybrid, what its shortlist kept; nothing for similarity."""
    llm = metrics.get("llm")
    if not llm:
        return []
    tokens, per_recipe, latency = llm["tokens"], llm["tokens_per_recipe"], llm["latency_ms"]
    lines = [
        f"Model source {llm['source']}: {llm['answered']} of {llm['recipes']} recipes answered "
        f"({llm['cache_hits']} from earlier answers), {llm['failures']} failed",
        f"Tokens per recipe: prompt {per_recipe['prompt']:.1f}, completion {per_recipe['completion']:.1f}, "
        f"cached {per_recipe['cached']:.1f} (in all: {tokens['prompt']} / {tokens['completion']} / {tokens['cached']})",
        f"Cost: ${llm['cost']:.4f} in all, ${llm['cost_per_recipe']:.6f} per recipe; "
        f"{llm['calls_per_recipe']:.2f} calls per recipe; latency per recipe p50 {latency['p50']:.0f} ms, "
        f"p95 {latency['p95']:.0f} ms",
        f"Validation dropped {llm['unknown_dropped']} tags outside the allowed ones and {llm['over_k_dropped']} over k",
        _confidence_line(llm.get("confidence") or {}),
        *(f"  failed: {example}" for example in llm["failure_examples"]),
    ]
    hybrid = metrics.get("hybrid")
    if hybrid:
        recall = hybrid["shortlist_recall"]
        by_category = ", ".join(
            f"{slug} {value:.3f}" for slug, value in hybrid["shortlist_recall_by_category"].items() if value is not None
        )
        alone = hybrid["similarity_alone"]["overall"]
        lines += [
            f"Hybrid shortlist recall {recall:.3f} of {hybrid['gold_tags_in_taxonomy']} gold tags in the taxonomy "
            f"({by_category}); {hybrid['shortlisted_per_recipe']:.1f} tags offered per recipe"
            if recall is not None
            else "Hybrid shortlist recall: no gold tag of the dataset is in the taxonomy",
            f"Decided by similarity {hybrid['decided_by_similarity']}, by the model {hybrid['decided_by_llm']}; "
            f"similarity alone: micro-F1 {alone['f1']:.3f} (precision {alone['precision']:.3f}, "
            f"recall {alone['recall']:.3f})",
        ]
    return [*lines, ""]


def _judge_lines(metrics: dict[str, Any]) -> list[str]:
    """What the LLM judge (--judge) said of the predicted tags; nothing when it was not asked."""
    judge = metrics.get("judge")
    if not judge:
        return []
    rows = [["category", "judged", "relevant", "partly", "not", "judged precision"]]
    for slug, values in judge["categories"].items():
        verdicts, precision = values["verdicts"], values["judged_precision"]
        rows.append(
            [
                slug,
                str(values["judged"]),
                *(str(verdicts[v]) for v in ("relevant", "partly", "not_relevant")),
                f"{precision:.3f}" if precision is not None else "-",
            ]
        )
    overall, kappa = judge["judged_precision"], judge["kappa"]
    return [
        f"LLM judge {judge['source']} ({judge['prompt_version']}): {judge['recipes_judged']} recipes judged, "
        f"{judge['failures']} failed, {judge['missing_verdicts']} tags without a verdict",
        *_table(rows),
        f"Judged precision {overall:.3f} (relevant 1, partly 0.5, not 0)"
        if overall is not None
        else "Judged precision: no tag was judged",
        f"Agreement with gold on {judge['gold_compared']} tags: Cohen's kappa {kappa:.3f} (judge's relevant "
        "against gold membership)"
        if kappa is not None
        else f"Agreement with gold on {judge['gold_compared']} tags: Cohen's kappa undefined",
        "",
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


def _fast_comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """The fast mode's quality beside the full model's (runner.embedding_comparison)."""
    header = ["category", "support", "full P", "full R", "full F1", "fast P", "fast R", "fast F1", "ΔF1"]
    rows = [header]
    named = [*comparison["categories"].items(), ("overall (micro)", {"support": "", **comparison["overall"]})]
    for slug, values in named:
        rows.append(
            [
                slug,
                str(values["support"]),
                *(
                    f"{values[f'{model}_{key}']:.3f}"
                    for model in ("full", "fast")
                    for key in ("precision", "recall", "f1")
                ),
                f"{values['f1_delta']:+.3f}",
            ]
        )
    return ["Fast mode (static model2vec model) against the full model:", *_table(rows)]


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
        parser.add_argument(
            "--source", help="llm and hybrid: the model source (an LLM source's name; default LLM_DEFAULT_SOURCE)."
        )
        parser.add_argument(
            "--here",
            action="store_true",
            help="llm and hybrid: ask the model from this process instead of the worker.",
        )
        parser.add_argument(
            "--resume", type=int, metavar="JOB", help="llm and hybrid: continue evaluation job JOB where it stopped."
        )
        parser.add_argument(
            "--calibrate",
            action="store_true",
            help="llm and hybrid: give the source the calibration of its stated confidences fitted on this dataset.",
        )
        embedding = parser.add_mutually_exclusive_group()
        embedding.add_argument(
            "--embedding",
            choices=EmbeddingMode.values,
            default=EmbeddingMode.FULL,
            help="similarity: embed with the full model (default) or the fast mode's distilled static model.",
        )
        embedding.add_argument(
            "--compare-fast",
            action="store_true",
            help="similarity: evaluate with the full model and with the fast mode, and print the fast mode's "
            "precision, recall and F1 per category beside the full model's, with the F1 delta.",
        )
        parser.add_argument(
            "--judge",
            metavar="SOURCE",
            help="An LLM judge (this LLM source) also rates each recipe's predicted tags; the report adds judged "
            "precision and Cohen's kappa with the gold labels.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = _file(options["path"], option="dataset")
        assert path is not None
        train_path = _file(options["train"], option="--train")
        output = Path(options["output"]) if options["output"] else None
        if output is not None and not output.parent.is_dir():
            # Checked first: finding out after a long evaluation would waste it.
            raise CommandError(f"The folder of --output {output} does not exist.")
        fast = options["compare_fast"] or options["embedding"] == EmbeddingMode.FAST
        if fast and not fast_model_available():
            # Checked first: finding out after the full model's evaluation would waste it.
            raise CommandError(
                f"Fast mode has not been distilled into {fast_model_path()}: run `python manage.py embedding_distill`."
            )
        if options["strategy"] in LLM_STRATEGIES or options["resume"] is not None:
            if options["compare_fast"] or options["embedding"] != EmbeddingMode.FULL:
                raise CommandError("--embedding and --compare-fast apply to the similarity strategy.")
            if options["folds"] is not None or train_path is not None:
                raise CommandError(
                    "--folds and --train apply to the similarity strategy: llm and hybrid are evaluated with the "
                    "taxonomy and the tagger as the database holds them."
                )
            if options["judge"]:
                # Checked first: finding out after a long evaluation would waste it.
                try:
                    llm_source_get(name=options["judge"])
                except LLMError as exc:
                    raise CommandError(f"The judge cannot be asked: {exc}") from exc
            run = self._evaluate_with_model(path, options)
            if options["calibrate"]:
                try:
                    table = source_calibration_apply(source=run.config["source"], run=run)
                except EvaluationError as exc:
                    raise CommandError(str(exc)) from exc
                self.stderr.write(f"Source {run.config['source']} now calibrates stated confidences by {table}")
            if options["judge"]:
                try:
                    run = evaluation_job_judge(job=run.job, source=options["judge"])
                except EvaluationError as exc:
                    raise CommandError(str(exc)) from exc
        else:
            if options["source"] or options["calibrate"]:
                raise CommandError("--source and --calibrate apply to the llm and hybrid strategies.")
            run = self._evaluate_similarity(path, train_path, options, embedding=options["embedding"])
        self._report(run)
        metrics = run.metrics
        if options["compare_fast"]:
            self.stderr.write("Evaluating again with the fast mode's model")
            fast = self._evaluate_similarity(path, train_path, options, embedding=EmbeddingMode.FAST)
            comparison = embedding_comparison(full=run.metrics, fast=fast.metrics)
            self.stdout.write("")
            for line in _fast_comparison_lines(comparison):
                self.stdout.write(line)
            stored = f"Stored the fast mode's evaluation run #{fast.pk} ({fast.duration_seconds:.1f}s)."
            self.stdout.write(self.style.SUCCESS(stored))
            metrics = {**run.metrics, "fast_mode": comparison}
        if output is not None:
            output.write_text(json.dumps(metrics, indent=2) + "\n")
            self.stderr.write(f"Wrote {output}")

    def _evaluate_similarity(
        self, path: Path, train_path: Path | None, options: dict[str, Any], *, embedding: str
    ) -> EvaluationRun:
        try:
            return evaluation_run(
                path=path,
                k=options["k"],
                strategy=options["strategy"],
                categories=_categories(options["categories"]),
                folds=options["folds"],
                train_path=train_path,
                progress=lambda message: self.stderr.write(message),
                judge_source=options["judge"],
                embedding=embedding,
            )
        except (EvaluationError, DatasetError) as exc:
            raise CommandError(str(exc)) from exc

    def _evaluate_with_model(self, path: Path, options: dict[str, Any]) -> EvaluationRun:
        try:
            if options["resume"] is not None:
                job = EvaluationJob.objects.filter(pk=options["resume"]).first()
                if job is None:
                    raise CommandError(f"There is no evaluation job {options['resume']}.")
            else:
                job = evaluation_job_start_from_file(
                    path=path,
                    strategy=options["strategy"],
                    source=options["source"],
                    k=options["k"],
                    categories=_categories(options["categories"]),
                )
        except (EvaluationError, DatasetError) as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Evaluation job #{job.pk}: {job.total} recipes, {job.strategy} with source {job.source}")
        bar = tqdm(total=job.total, unit="recipe", file=self.stderr._out, disable=None)

        def advance(done: int, total: int) -> None:
            bar.update(done - bar.n)

        try:
            if options["here"]:
                try:
                    job = evaluation_job_run_here(job_id=job.pk, progress=advance)
                except (EvaluationError, EvaluationJobBusy) as exc:
                    raise CommandError(str(exc)) from exc
            else:
                if job.status == EvaluationJobStatus.QUEUED or options["resume"] is not None:
                    evaluation_job_enqueue_now(job=job)
                job = self._wait(job, advance)
        finally:
            bar.close()
        if job.status != EvaluationJobStatus.SUCCEEDED or job.run is None:
            raise CommandError(f"Evaluation job #{job.pk} failed: {job.error or job.status}")
        return job.run

    def _wait(self, job: EvaluationJob, advance: Callable[[int, int], None]) -> EvaluationJob:
        """Follow the job on the worker until it ends; say how to go on when no worker takes it."""
        started, hinted = time.monotonic(), False
        while time.monotonic() - started < WAIT_LIMIT_SECONDS:
            job.refresh_from_db()
            progress = evaluation_job_progress(job=job)
            advance(progress.done, progress.total)
            if job.status in (EvaluationJobStatus.SUCCEEDED, EvaluationJobStatus.FAILED):
                return EvaluationJob.objects.select_related("run").get(pk=job.pk)
            if not hinted and job.status == EvaluationJobStatus.QUEUED and time.monotonic() - started > NO_WORKER_HINT:
                hinted = True
                self.stderr.write(
                    f"No worker has taken job #{job.pk} yet: start one (`make run` does), or stop here (Ctrl-C) "
                    f"and run `manage.py evaluate {job.dataset}.jsonl --resume {job.pk} --here`."
                )
            time.sleep(POLL_SECONDS)
        raise CommandError(
            f"Evaluation job #{job.pk} did not finish within {WAIT_LIMIT_SECONDS // 3600} hours; it goes on on the "
            f"worker: `manage.py evaluate {job.dataset}.jsonl --resume {job.pk}` follows it again."
        )

    def _report(self, run: EvaluationRun) -> None:
        for line in _report_lines(run.metrics):
            self.stdout.write(line)
        stored = f"Stored evaluation run #{run.pk} ({run.duration_seconds:.1f}s, code {run.code_version})."
        self.stdout.write(self.style.SUCCESS(stored))
