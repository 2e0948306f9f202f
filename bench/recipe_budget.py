"""What the hybrid's recipe budget (HYBRID_RECIPE_MAX_TOKENS) saves and what it hides, on each shared labelled
dataset, without a database or a model.

Per budget and cut (the instructions' beginning, or the sentences that name a listed tag first: every tag of
the dataset's vocabulary is listed here, a harder case than a shortlist), over every recipe of the dataset as
the prompt shows it (prompts.rendering, between the fences):
- the recipe's tokens per recipe (counted as bench/llm_quality.py counts prompt tokens);
- how much of the instructions is shown (their characters), and
- what the model no longer sees: the gold tags whose name is written in the whole recipe but only in the
  instructions the budget cut off (every word of the name, by its first five letters: "slowcooked" matches
  "slow cooker" only if both words appear). An oracle never reads the instructions, so its F1 cannot show
  this; a real model that reads "fry the onions" for a `method` tag can. It is a lower bound of the evidence
  lost (a tag can be implied without being named) and says nothing of what a model does with it.

    .venv/bin/python bench/recipe_budget.py [--datasets themealdb,basedcooking] [--budgets 0,200,150,100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.llm_quality import DATASETS, say, shared_datasets, tokenizer


def dataset_budgets(*, path: Path, budgets: list[int]) -> None:
    from feedback.evaluation.datasets import dataset_read
    from prompts.rendering import _recipe_block, naming_stems

    _, count = tokenizer()
    dataset = dataset_read(path)
    recipes = dataset.recipes
    say(f"\n== {dataset.name}: {len(recipes)} recipes")
    # What the hybrid lists is a shortlist of these; naming them all leaves gold tags' sentences more to compete
    # with than a shortlist does.
    naming = naming_stems(name for tags in dataset.vocabulary.values() for name in tags.values())
    for budget, cut in [(b, c) for b in budgets for c in (("beginning", "naming") if b else ("beginning",))]:
        tokens = shown_named = hidden = 0
        instructions_whole = instructions_shown = 0
        hidden_by_category: dict[str, int] = {}
        for recipe in recipes:
            whole = _recipe_block(recipe.text).lower()
            block = _recipe_block(recipe.text, max_tokens=budget or None, naming=naming if cut == "naming" else ())
            shown = block.lower()
            instructions_whole += len(whole.partition("instructions:")[2].strip())
            instructions_shown += len(shown.partition("instructions:")[2].strip().replace("…", ""))
            tokens += count(block)
            for category, tags in recipe.labels.items():
                for tag in tags:
                    # The stems the naming cut looks for, sought anywhere in the text here.
                    words = next(iter(naming_stems([dataset.vocabulary.get(category, {}).get(tag, tag)])), ())
                    if not words:
                        continue
                    if all(w in shown for w in words):
                        shown_named += 1
                    elif all(w in whole for w in words):
                        hidden += 1
                        hidden_by_category[category] = hidden_by_category.get(category, 0) + 1
        named = shown_named + hidden
        by_category = ", ".join(f"{c} {n}" for c, n in sorted(hidden_by_category.items(), key=lambda kv: -kv[1]))
        say(
            f"  budget {budget or 'none':>4}, {cut:<9}: {tokens / len(recipes):5.0f} recipe tokens per recipe, "
            f"{instructions_shown / max(1, instructions_whole):.0%} of the instructions' characters shown; gold tags "
            f"named in the recipe {named}, of them named only in the cut instructions {hidden} ({hidden / named:.1%})"
            + (f": {by_category}" if by_category else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS[:2]), help="comma-separated dataset names")
    parser.add_argument("--budgets", default="0,400,200,150,120,100", help="recipe budgets in tokens (0: none)")
    args = parser.parse_args()
    folder = shared_datasets()
    if folder is None:
        say("Skipped: no shared datasets folder.")
        return
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        path = folder / f"{name}.jsonl"
        if path.is_file():
            dataset_budgets(path=path, budgets=budgets)
        else:
            say(f"\n== {name}: skipped, {path} does not exist")


if __name__ == "__main__":
    main()
