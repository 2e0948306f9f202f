"""How much of what all the labels teach the learned tagger knows after a few reviews: fits on the first N
recipes of the learning curve's pool (seed 0's random order, the replay's) and on the whole pool, each scored
on the replay's held-out fold, per category.

The learning curve's third target (at 1,000 reviews, F1 within 0.02 of the cross-validated F1 on all labels)
is about this ratio; this bench measures it with two fits per size instead of a whole curve, so that a change
to the learner can be judged quickly, and prints where the gap is (per category). --baselines fits the
evaluation's two learned references (15 nearest neighbours, TF-IDF + logistic regression, each tuned as
`evaluate` tunes them) on the same recipes: how much any learner gains between the sizes.

    .venv/bin/python bench/learner_efficiency.py [--dataset archanas_kitchen] [--sizes 1000,all] [--seed 0]
        [--cv-folds 5] [--set tagging.learning.NEIGHBOURS=15 ...]

--cv-folds adds the cross-validated F1 on every label (the folds and the fit of `manage.py evaluate`'s tagger,
without its baselines); --set tries another value of a module's constant without editing it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import learning_curve as bench  # sets Django up, and keeps the embeddings cached
from threadpoolctl import threadpool_limits

from feedback.evaluation import metrics, replay
from feedback.evaluation.baselines import NearestNeighbours, TfidfLogisticRegression
from feedback.evaluation.datasets import fold_of
from feedback.evaluation.runner import _split
from tagging import learning
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY


def _predictions(
    model: learning.LearnedModel, test: learning.LabelledSet, slugs: list[str], k: int
) -> list[dict[str, set[str]]]:
    returned = model.predict(embeddings=test.embeddings, texts=test.texts, category_slugs=slugs, k=k)
    return [{slug: {tag for tag, _ in tags} for slug, tags in r.items()} for r in returned]


def _line(report: metrics.Report, slugs: list[str]) -> str:
    per_category = ", ".join(
        f"{slug} {report.categories[slug].f1:.3f} (P {report.categories[slug].precision:.3f}"
        f" R {report.categories[slug].recall:.3f})"
        for slug in slugs
    )
    return f"micro-F1 {report.overall_f1:.3f}; {per_category}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="archanas_kitchen")
    parser.add_argument("--sizes", default="1000,all", help="reviews to fit on, comma-separated; all: the pool")
    parser.add_argument("--seed", type=int, default=0, help="the random order the first N are taken from")
    parser.add_argument("--k", type=int, default=DEFAULT_TAGS_PER_CATEGORY)
    parser.add_argument("--cv-folds", type=int, default=0, help="also the cross-validated F1 on all labels")
    parser.add_argument(
        "--baselines", action="store_true", help="also knn15 and tfidf_logreg (each tuned as in evaluate) per size"
    )
    parser.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE")
    args = parser.parse_args()
    for assignment in args.set:
        name, value = assignment.split("=", 1)
        module, attribute = name.rsplit(".", 1)
        setattr(
            importlib.import_module(module), attribute, type(getattr(importlib.import_module(module), attribute))(value)
        )
        print(f"{name} = {value}")

    loaded = bench.dataset_embedded(args.dataset)
    dataset, data, specs, embeddings = loaded.dataset, loaded.data, loaded.specs, loaded.data.embeddings
    ids = [r.id for r in dataset.recipes]
    held_out = [i for i, rid in enumerate(ids) if fold_of(rid, replay.HELD_OUT_FOLDS) == replay.HELD_OUT_FOLD]
    pool = [i for i, rid in enumerate(ids) if fold_of(rid, replay.HELD_OUT_FOLDS) != replay.HELD_OUT_FOLD]
    order = replay._seeded_order(ids, pool, args.seed)
    slugs = [c.slug for c in specs]
    test = replay._subset(data, held_out)
    print(f"{dataset.name}: {len(held_out)} held out, a pool of {len(pool)}", flush=True)
    with threadpool_limits(limits=1):
        for size_text in [s for s in args.sizes.split(",") if s]:
            size = len(pool) if size_text == "all" else int(size_text)
            started = time.perf_counter()
            model = learning.fit(data=replay._subset(data, sorted(order[:size])), categories=specs, k=args.k)
            report = metrics.score(
                gold=test.labels, predicted=_predictions(model, test, slugs, args.k), categories=slugs, k=args.k
            )
            print(
                f"{size:>5} reviews: {_line(report, slugs)} ({time.perf_counter() - started:.0f}s)",
                flush=True,
            )
            if args.baselines:
                rows = sorted(order[:size])
                train_split = _split([dataset.recipes[i] for i in rows], embeddings[rows], specs)
                test_split = _split([dataset.recipes[i] for i in held_out], embeddings[held_out], specs)
                for baseline in (NearestNeighbours(), TfidfLogisticRegression()):
                    started = time.perf_counter()
                    baseline.fit(train_split, specs, args.k)
                    report = metrics.score(
                        gold=test.labels, predicted=baseline.predict(test_split, args.k), categories=slugs, k=args.k
                    )
                    print(
                        f"{size:>5} reviews, {baseline.name}: {_line(report, slugs)}"
                        f" ({time.perf_counter() - started:.0f}s)",
                        flush=True,
                    )
        if args.cv_folds:
            started = time.perf_counter()
            fold = [fold_of(rid, args.cv_folds) for rid in ids]
            predicted_all: list[dict[str, set[str]]] = [{} for _ in ids]
            for f in range(args.cv_folds):
                train = [i for i in range(len(ids)) if fold[i] != f]
                scored = [i for i in range(len(ids)) if fold[i] == f]
                predicted_all_fold = _predictions(
                    learning.fit(data=replay._subset(data, train), categories=specs, k=args.k),
                    replay._subset(data, scored),
                    slugs,
                    args.k,
                )
                for row, prediction in zip(scored, predicted_all_fold, strict=True):
                    predicted_all[row] = prediction
            report = metrics.score(gold=data.labels, predicted=predicted_all, categories=slugs, k=args.k)
            print(
                f"cross-validated ({args.cv_folds} folds, all {len(ids)}): {_line(report, slugs)}"
                f" ({time.perf_counter() - started:.0f}s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
