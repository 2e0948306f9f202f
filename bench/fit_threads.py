"""How long the learned tagger's fit takes with the BLAS threads the process would use by default and with the
one thread `tagging.learning.fit` limits itself to: the same recipes of a shared dataset, fitted alternately
--repeats times each, in one run (so that the machine's load falls on both alike).

    .venv/bin/python bench/fit_threads.py [--dataset archanas_kitchen] [--recipes 2000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import learning_curve as bench  # sets Django up, and keeps the embeddings cached
from threadpoolctl import threadpool_info

from feedback.evaluation import replay
from tagging import learning
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="archanas_kitchen")
    parser.add_argument("--recipes", type=int, default=2000, help="the dataset's first N recipes")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    loaded = bench.dataset_embedded(args.dataset)
    dataset, data, specs = loaded.dataset, loaded.data, loaded.specs
    rows = list(range(min(args.recipes, len(data))))
    subset = replay._subset(data, rows)
    default_threads = {info["internal_api"]: info["num_threads"] for info in threadpool_info()}
    print(f"{dataset.name}: fits on {len(rows)} recipes; the process's default threads: {default_threads}")

    seconds: dict[str, list[float]] = {"default threads": [], "one BLAS thread (fit)": []}
    for _ in range(args.repeats):
        for name, fit in (
            ("default threads", learning._fit),
            ("one BLAS thread (fit)", learning.fit),
        ):
            started = time.perf_counter()
            fit(
                data=subset,
                categories=specs,
                k=DEFAULT_TAGS_PER_CATEGORY,
                min_labelled=5,
                precision_floors=None,
                progress=None,
            )
            seconds[name].append(time.perf_counter() - started)
            print(f"  {name}: {seconds[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(f"{name}: median {median:.1f} s")
    print(f"default threads / one thread: {medians['default threads'] / medians['one BLAS thread (fit)']:.2f}")


if __name__ == "__main__":
    main()
