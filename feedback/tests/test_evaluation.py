"""`manage.py evaluate` and the evaluation_run service, end to end on a tiny labelled dataset."""

from __future__ import annotations

import hashlib
import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from conftest import SHARED_DATASETS
from feedback.evaluation.datasets import fold_of
from feedback.jsonl import tag_slug
from feedback.models import EvaluationRun, GoldLabel
from feedback.services.evaluation import EvaluationError, evaluation_run
from prompts.models import LLMSource
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe

pytestmark = pytest.mark.django_db

# Written for these tests: (title, ingredients, instructions), by cuisine and course.
ITALIAN_MAINS = [
    (
        "Spaghetti Carbonara",
        ["spaghetti", "guanciale", "eggs", "pecorino romano", "black pepper"],
        "Boil the spaghetti. Fry the guanciale, toss with pasta, eggs and pecorino.",
    ),
    (
        "Penne all'Arrabbiata",
        ["penne", "tomato passata", "garlic", "chilli", "olive oil"],
        "Simmer tomato with garlic and chilli; toss with the penne and parsley.",
    ),
    (
        "Lasagne alla Bolognese",
        ["lasagne sheets", "beef ragu", "bechamel", "parmigiano"],
        "Layer pasta sheets, ragu and bechamel; bake with parmigiano on top.",
    ),
    (
        "Risotto alla Milanese",
        ["arborio rice", "saffron", "butter", "parmigiano", "white wine"],
        "Toast the rice, add wine and stock ladle by ladle, finish with saffron and butter.",
    ),
    (
        "Margherita Pizza",
        ["pizza dough", "tomato sauce", "mozzarella", "basil", "olive oil"],
        "Stretch the dough, top with tomato and mozzarella, bake hot, add basil.",
    ),
    (
        "Fettuccine Alfredo",
        ["fettuccine", "butter", "parmigiano reggiano"],
        "Toss hot fettuccine with butter and grated parmigiano until creamy.",
    ),
    (
        "Osso Buco",
        ["veal shanks", "white wine", "tomato", "gremolata", "celery"],
        "Brown the veal shanks, braise in wine and tomato, serve with gremolata.",
    ),
    (
        "Pesto Genovese with Trofie",
        ["trofie pasta", "basil", "pine nuts", "parmigiano", "olive oil"],
        "Pound basil, pine nuts and cheese with oil; toss with the trofie.",
    ),
    (
        "Gnocchi al Pomodoro",
        ["potato gnocchi", "tomato", "basil", "parmigiano"],
        "Boil the gnocchi and toss with a fresh tomato and basil sauce.",
    ),
    (
        "Spaghetti alle Vongole",
        ["spaghetti", "clams", "garlic", "white wine", "parsley"],
        "Steam the clams in wine and garlic, toss with spaghetti and parsley.",
    ),
    (
        "Chicken Cacciatore",
        ["chicken thighs", "tomato", "olives", "rosemary", "red wine"],
        "Brown the chicken and braise with tomato, olives, wine and rosemary.",
    ),
    (
        "Ravioli di Ricotta e Spinaci",
        ["pasta dough", "ricotta", "spinach", "sage butter"],
        "Fill pasta with ricotta and spinach, boil, serve with sage butter.",
    ),
    (
        "Minestrone",
        ["cannellini beans", "zucchini", "carrot", "tomato", "small pasta", "parmigiano rind"],
        "Simmer the vegetables and beans with the rind, add pasta at the end.",
    ),
    (
        "Saltimbocca alla Romana",
        ["veal escalopes", "prosciutto", "sage", "white wine", "butter"],
        "Top veal with prosciutto and sage, fry in butter, deglaze with wine.",
    ),
    (
        "Polenta with Mushroom Ragu",
        ["polenta", "porcini mushrooms", "garlic", "parmigiano"],
        "Cook the polenta slowly and top with a porcini and garlic ragu.",
    ),
]
ITALIAN_DESSERTS = [
    (
        "Tiramisu",
        ["savoiardi", "espresso", "mascarpone", "eggs", "cocoa"],
        "Dip savoiardi in espresso, layer with mascarpone cream, dust with cocoa.",
    ),
    (
        "Panna Cotta",
        ["cream", "sugar", "gelatine", "vanilla"],
        "Warm cream with sugar and vanilla, set with gelatine, chill.",
    ),
    (
        "Cannoli Siciliani",
        ["cannoli shells", "ricotta", "sugar", "candied orange", "pistachios"],
        "Fill the shells with sweet ricotta and dip the ends in pistachios.",
    ),
    ("Affogato al Caffe", ["vanilla gelato", "espresso"], "Pour a hot espresso over a scoop of vanilla gelato."),
    (
        "Zabaglione",
        ["egg yolks", "sugar", "marsala wine"],
        "Whisk yolks, sugar and marsala over simmering water until thick.",
    ),
]
JAPANESE_MAINS = [
    (
        "Chicken Teriyaki",
        ["chicken thighs", "soy sauce", "mirin", "sake", "sugar"],
        "Pan-fry the chicken and glaze with soy, mirin and sake.",
    ),
    (
        "Tonkotsu Ramen",
        ["ramen noodles", "pork bone broth", "chashu pork", "soft egg", "nori"],
        "Pour the rich pork broth over noodles, top with chashu, egg and nori.",
    ),
    (
        "Salmon Nigiri Sushi",
        ["sushi rice", "rice vinegar", "salmon", "wasabi"],
        "Season the rice with vinegar, shape it and top with salmon and wasabi.",
    ),
    (
        "Miso Soup",
        ["dashi", "white miso", "tofu", "wakame", "spring onion"],
        "Warm the dashi, dissolve the miso, add tofu and wakame.",
    ),
    (
        "Tempura Prawns",
        ["prawns", "tempura flour", "ice water", "tentsuyu dipping sauce"],
        "Dip the prawns in a cold light batter and deep-fry until crisp.",
    ),
    (
        "Okonomiyaki",
        ["cabbage", "flour", "dashi", "eggs", "okonomiyaki sauce", "bonito flakes"],
        "Fry a cabbage pancake, top with sauce, mayonnaise and bonito flakes.",
    ),
    (
        "Gyudon",
        ["beef", "onion", "dashi", "soy sauce", "mirin", "steamed rice"],
        "Simmer thin beef and onion in dashi, soy and mirin; serve over rice.",
    ),
    (
        "Tonkatsu",
        ["pork loin", "panko", "eggs", "cabbage", "tonkatsu sauce"],
        "Coat the pork in panko, deep-fry, slice, serve with cabbage.",
    ),
    (
        "Yakitori",
        ["chicken thighs", "spring onion", "tare sauce", "skewers"],
        "Skewer chicken and spring onion, grill and baste with tare.",
    ),
    (
        "Katsu Curry",
        ["chicken cutlet", "panko", "japanese curry roux", "rice"],
        "Fry a panko chicken cutlet and serve with curry roux sauce over rice.",
    ),
    (
        "Zaru Soba",
        ["soba noodles", "tsuyu", "nori", "wasabi", "spring onion"],
        "Chill the boiled soba and dip it in cold tsuyu with wasabi.",
    ),
    (
        "Onigiri with Umeboshi",
        ["japanese rice", "umeboshi", "nori", "salt"],
        "Shape salted rice around an umeboshi and wrap with nori.",
    ),
    (
        "Kitsune Udon",
        ["udon noodles", "dashi", "soy sauce", "aburaage tofu"],
        "Serve udon in hot dashi broth topped with sweet fried tofu.",
    ),
    (
        "Oyakodon",
        ["chicken", "eggs", "onion", "dashi", "soy sauce", "rice"],
        "Simmer chicken and onion in dashi, set with egg, serve over rice.",
    ),
    (
        "Takoyaki",
        ["octopus", "takoyaki batter", "pickled ginger", "bonito flakes"],
        "Cook octopus balls in a takoyaki pan and top with sauce and bonito.",
    ),
]
JAPANESE_DESSERTS = [
    (
        "Mochi with Red Bean",
        ["glutinous rice flour", "sugar", "anko red bean paste"],
        "Steam the rice dough and wrap it around sweet red bean paste.",
    ),
    (
        "Dorayaki",
        ["flour", "eggs", "honey", "anko red bean paste"],
        "Cook small honey pancakes and sandwich them with red bean paste.",
    ),
    (
        "Matcha Ice Cream",
        ["matcha powder", "cream", "milk", "sugar"],
        "Whisk matcha into sweet cream and milk and churn until frozen.",
    ),
    (
        "Mitarashi Dango",
        ["rice flour dumplings", "soy sauce", "sugar", "skewers"],
        "Skewer rice dumplings, grill, and coat with sweet soy glaze.",
    ),
    (
        "Taiyaki",
        ["flour", "eggs", "sugar", "anko red bean paste"],
        "Bake fish-shaped cakes filled with red bean paste.",
    ),
]

SCHEMA_KEYS = {
    "dataset",
    "strategy",
    "k",
    "recipes",
    "overall",
    "categories",
    "baselines",
    "latency_ms",
    "adherence",
    "calibration",
    "comparison",
    "precision_floors",
}
BASELINE_NAMES = {"majority", "zero_shot", "knn15", "tfidf_logreg"}


def _recipes() -> list[dict[str, Any]]:
    """40 recipes: 20 Italian, 20 Japanese; in each, 15 main courses and 5 desserts."""
    rows = []
    groups = [
        ("Italian", "Main Course", ITALIAN_MAINS),
        ("Italian", "Dessert", ITALIAN_DESSERTS),
        ("Japanese", "Main Course", JAPANESE_MAINS),
        ("Japanese", "Dessert", JAPANESE_DESSERTS),
    ]
    for cuisine, course, group in groups:
        for title, ingredients, instructions in group:
            rows.append(
                {
                    "id": f"tiny-{len(rows) + 1:02d}",
                    "title": title,
                    "ingredients": ingredients,
                    "instructions": instructions,
                    "tags": {"cuisine": [cuisine], "course": [course]},
                }
            )
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return _write(tmp_path / "tiny.jsonl", _recipes())


@pytest.fixture
def twins(tmp_path: Path) -> Path:
    """20 dishes, each twice under two ids that fall in the same of 2 folds, and a "lot" category whose
    tag belongs to one pair only.

    Cross-validated, a pair is scored by a tagger that saw neither twin, so nothing can predict its lot
    (the lot names appear nowhere in the texts). A tagger that had seen the scored recipes would find
    each lot from the twin (or the recipe itself): see the control test below.
    """
    rows = []
    for number, recipe in enumerate(_recipes()[::2]):
        first = f"pair{number:02d}-a"
        second = next(
            f"pair{number:02d}-b{n}" for n in range(100) if fold_of(f"pair{number:02d}-b{n}", 2) == fold_of(first, 2)
        )
        for recipe_id in (first, second):
            rows.append({**recipe, "id": recipe_id, "tags": {**recipe["tags"], "lot": [f"Lot {number + 101}"]}})
    assert {fold_of(row["id"], 2) for row in rows} == {0, 1}
    return _write(tmp_path / "twins.jsonl", rows)


def _evaluate(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("evaluate", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_folds_run_end_to_end_and_store_the_run(tiny: Path) -> None:
    out, err = _evaluate(str(tiny), "--strategy", "similarity", "--k", "3", "--folds", "2")

    run = EvaluationRun.objects.get()
    assert run.dataset == "tiny"
    assert run.dataset_sha256 == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert run.strategy == "similarity"
    assert run.config == {"k": 3, "folds": 2, "train": None, "categories": ["cuisine", "course"]}
    assert run.recipes == 40
    assert run.prompt_version is None
    assert re.fullmatch(r"[0-9a-f]{4,40}|0\.1\.0", run.code_version)
    assert run.duration_seconds > 0
    assert run.created_by is None
    assert set(run.metrics) == SCHEMA_KEYS
    assert run.overall_f1 == pytest.approx(run.metrics["overall"]["f1"], abs=1e-4)
    assert run.metrics["categories"]["cuisine"]["support"] == 40
    # Two cuisines this far apart are easy: anything less means the tagger is broken.
    assert run.metrics["categories"]["cuisine"]["f1"] > 0.8
    assert run.metrics["adherence"] == {"unknown_tags": 0, "over_k": 0}
    assert "Fold 1/2" in err
    assert "Fold 2/2" in err
    assert re.search(r"^category\s+support\s+precision\s+recall\s+F1\s+macro-F1\s+coverage\s+majority", out, re.M)
    cuisine = run.metrics["categories"]["cuisine"]
    assert re.search(
        rf"^cuisine\s+40\s+{cuisine['precision']:.3f}\s+{cuisine['recall']:.3f}\s+{cuisine['f1']:.3f}", out, re.M
    )
    assert f"Overall micro-F1 {run.metrics['overall']['f1']:.3f}" in out
    assert "Latency per recipe: p50" in out
    assert "Adherence: 0 tags outside the taxonomy, 0 category answers with more than k tags" in out
    assert f"Stored evaluation run #{run.pk}" in out


def test_the_table_marks_the_categories_where_the_tagger_beats_every_baseline(tiny: Path) -> None:
    out, _ = _evaluate(str(tiny), "--folds", "2")

    metrics = EvaluationRun.objects.get().metrics
    for slug, values in metrics["categories"].items():
        line = next(line for line in out.splitlines() if line.startswith(f"{slug} "))
        beats_all = all(values["f1"] > metrics["baselines"][name][slug]["f1"] for name in BASELINE_NAMES)
        assert line.endswith("*") == beats_all
        for name in BASELINE_NAMES:
            assert f"{metrics['baselines'][name][slug]['f1']:.3f}" in line


def test_output_writes_the_metrics_json_with_exactly_the_spec_keys(tiny: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"

    _evaluate(str(tiny), "--folds", "2", "--k", "2", "--categories", "cuisine,course", "--output", str(report))

    data = json.loads(report.read_text())
    assert report.read_text().startswith('{\n  "dataset": "tiny",')
    assert set(data) == SCHEMA_KEYS
    assert (data["dataset"], data["strategy"], data["k"], data["recipes"]) == ("tiny", "similarity", 2, 40)
    assert set(data["overall"]) == {"precision", "recall", "f1"}
    assert set(data["categories"]) == {"cuisine", "course"}
    for values in data["categories"].values():
        assert set(values) == {"precision", "recall", "f1", "macro_f1", "coverage", "support"}
    assert set(data["baselines"]) == BASELINE_NAMES
    for per_category in data["baselines"].values():
        assert set(per_category) == {"cuisine", "course"}
        for values in per_category.values():
            assert set(values) == {"precision", "recall", "f1"}
    assert set(data["latency_ms"]) == {"p50", "p95"}
    assert set(data["adherence"]) == {"unknown_tags", "over_k"}
    assert set(data["calibration"]) == {"cuisine", "course"}
    for values in data["calibration"].values():
        assert set(values) == {"ece", "pairs", "population", "bins"}
        assert 0.0 <= values["ece"] <= 1.0
        # Each recipe's top k tags: 40 recipes, k = 2.
        assert values["pairs"] == 80
        assert len(values["bins"]) == 10
        assert sum(b["count"] for b in values["bins"]) == 80
    assert set(data["comparison"]) == {"cuisine", "course"}
    for slug, values in data["comparison"].items():
        assert set(values) == {"best_baseline", "tagger_f1", "baseline_f1", "margin", "margin_sd", "interval_95"}
        assert values["baseline_f1"] == max(data["baselines"][name][slug]["f1"] for name in BASELINE_NAMES)
        assert values["margin"] == pytest.approx(values["tagger_f1"] - values["baseline_f1"], abs=1e-3)
        lower, upper = values["interval_95"]
        assert lower <= upper
    assert data["precision_floors"] == {"cuisine": None, "course": None}
    assert data == EvaluationRun.objects.get().metrics


def test_categories_limit_what_is_scored(tiny: Path) -> None:
    _evaluate(str(tiny), "--folds", "2", "--categories", "course")

    run = EvaluationRun.objects.get()
    assert run.config["categories"] == ["course"]
    assert list(run.metrics["categories"]) == ["course"]
    assert list(run.metrics["baselines"]["majority"]) == ["course"]


def test_a_folds_recipes_labels_never_reach_the_tagger_that_scores_them(twins: Path) -> None:
    _evaluate(str(twins), "--folds", "2", "--k", "1")

    metrics = EvaluationRun.objects.get().metrics
    assert metrics["categories"]["lot"]["support"] == 40
    assert metrics["categories"]["lot"]["recall"] == 0
    # The baselines that learn from labels are held to the same folds.
    assert metrics["baselines"]["knn15"]["lot"]["recall"] == 0
    assert metrics["baselines"]["tfidf_logreg"]["lot"]["recall"] == 0


def test_a_tagger_that_saw_the_scored_recipes_would_find_their_lots(twins: Path) -> None:
    # The control for the test above: training on the scored file itself is exactly that leak, and the
    # lots are then found, so a runner that trained each fold on every recipe would fail that test.
    _evaluate(str(twins), "--train", str(twins), "--k", "1")

    assert EvaluationRun.objects.get().metrics["categories"]["lot"]["recall"] > 0.9


def test_train_mode_learns_from_one_file_and_scores_another(
    tmp_path: Path, staff: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _recipes()
    train = _write(tmp_path / "train.jsonl", rows[0::2])
    test = _write(tmp_path / "test.jsonl", rows[1::2])
    # Where there is no Git checkout (the Docker image) the package version stands in for the commit.
    monkeypatch.setattr("feedback.evaluation.provenance.subprocess.run", _no_git)
    messages: list[str] = []

    run = evaluation_run(
        path=test,
        k=3,
        strategy="similarity",
        categories=["cuisine"],
        folds=None,
        train_path=train,
        user=staff,
        progress=messages.append,
    )

    assert run.dataset == "test"
    assert run.config == {"k": 3, "folds": None, "train": "train", "categories": ["cuisine"]}
    assert run.recipes == 20
    assert run.metrics["categories"]["cuisine"]["support"] == 20
    assert run.metrics["categories"]["cuisine"]["f1"] > 0.8
    assert run.created_by == staff
    assert run.code_version == "0.1.0"
    assert "Read 20 recipes from test.jsonl" in messages
    assert "Read 20 training recipes from train.jsonl" in messages
    assert "Fold 1/1: trained on 20, scored 20" in messages


def _no_git(*args: Any, **kwargs: Any) -> Any:
    raise FileNotFoundError("git")


def test_without_folds_or_train_the_tagger_as_deployed_is_scored_against_the_file(
    tiny: Path, taxonomy: dict[str, Any]
) -> None:
    out, _ = _evaluate(str(tiny), "--k", "3")

    run = EvaluationRun.objects.get()
    assert run.config == {"k": 3, "folds": None, "train": "database", "categories": ["cuisine", "course"]}
    assert set(run.metrics) == SCHEMA_KEYS
    # The file's tags are matched to the taxonomy's by name ("Main Course" is course/main-course).
    assert run.metrics["categories"]["cuisine"]["support"] == 40
    assert run.metrics["categories"]["course"]["support"] == 40
    assert run.metrics["categories"]["cuisine"]["recall"] > 0.5
    # No gold labels in the database: nothing for the baselines to learn from.
    assert run.metrics["baselines"] == {}
    assert "(No baselines: they learn from gold labels, and the database has none.)" in out
    # The file is only compared: none of its recipes or labels is stored.
    assert not Recipe.objects.exists()
    assert not GoldLabel.objects.exists()


def test_without_folds_or_train_the_taxonomy_must_share_a_category_with_the_file(tiny: Path) -> None:
    with pytest.raises(CommandError, match=r"None of the categories of tiny \(cuisine, course\) is an active category"):
        _evaluate(str(tiny), "--k", "3")


def _bad_json(tmp_path: Path) -> str:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(_recipes()[0]) + "\n{not json\n")
    return str(path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--k", "0", "--folds", "2"], "k must be between 1 and 20, not 0"),
        (["--k", "21", "--folds", "2"], "k must be between 1 and 20, not 21"),
        (["--folds", "1"], "folds must be at least 2, not 1"),
        (["--folds", "41"], "folds (41) cannot exceed the dataset's 40 recipes"),
        (["--folds", "2", "--train", "{tiny}"], "not allowed with argument"),
        (["--strategy", "llm", "--folds", "2"], "--folds and --train apply to the similarity strategy"),
        (["--strategy", "hybrid", "--folds", "2"], "--folds and --train apply to the similarity strategy"),
        (["--strategy", "magic", "--folds", "2"], "invalid choice: 'magic'"),
        (["--categories", "cuisine,diet", "--folds", "2"], "The dataset tiny has no tags in diet"),
        (["--categories", " , ", "--folds", "2"], "Name at least one category"),
        (["--train", "{missing}"], "The --train file {missing} does not exist"),
        (["--folds", "2", "--output", "{missing}/report.json"], "The folder of --output {missing}/report.json"),
    ],
)
def test_bad_options_raise_a_command_error_naming_the_problem(
    tiny: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    missing = tmp_path / "missing"
    options = [option.format(tiny=tiny, missing=missing) for option in options]

    with pytest.raises(CommandError, match=re.escape(message.format(missing=missing))):
        _evaluate(str(tiny), *options)

    assert not EvaluationRun.objects.exists()


def test_a_missing_dataset_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"The dataset file \S+/nowhere\.jsonl does not exist"):
        _evaluate(str(tmp_path / "nowhere.jsonl"), "--folds", "2")


def test_a_line_that_is_no_recipe_is_a_command_error_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"broken.jsonl line 2: invalid JSON"):
        _evaluate(_bad_json(tmp_path), "--folds", "2")

    assert not EvaluationRun.objects.exists()


def test_the_service_refuses_folds_and_a_training_file_together(tiny: Path) -> None:
    with pytest.raises(EvaluationError, match="not both"):
        evaluation_run(path=tiny, k=3, strategy="similarity", categories=None, folds=2, train_path=tiny)


BASEDCOOKING = SHARED_DATASETS / "basedcooking.jsonl"


@pytest.mark.skipif(not BASEDCOOKING.is_file(), reason=f"the shared datasets are not here ({BASEDCOOKING} is missing)")
def test_on_basedcooking_the_tagger_beats_the_majority_guess_at_cuisine(tmp_path: Path) -> None:
    # Its first 150 recipes: encoding them is most of the test's time, and the whole file took 43 s.
    sample = tmp_path / "basedcooking.jsonl"
    sample.write_text("".join(BASEDCOOKING.read_text().splitlines(keepends=True)[:150]))

    _evaluate(str(sample), "--folds", "2", "--categories", "cuisine")

    metrics = EvaluationRun.objects.get().metrics
    assert metrics["recipes"] == 150
    assert metrics["categories"]["cuisine"]["f1"] > metrics["baselines"]["majority"]["cuisine"]["f1"]


# --- The LLM judge (--judge) ----------------------------------------------------------------------


def _gold_judge(verdict_of: Any) -> Any:
    """A scripted judge reading the question: each asked key's verdict is `verdict_of(in gold)` for the recipe
    whose title the question shows."""
    gold = {
        row["title"]: {f"{category}/{tag_slug(tag)}" for category, tags in row["tags"].items() for tag in tags}
        for row in _recipes()
    }

    def respond(request: dict[str, Any]) -> dict[str, Any]:
        user = next(m["content"] for m in request["messages"] if m["role"] == "user")
        title = re.search(r"^Title: (.+)$", user, re.M).group(1)  # type: ignore[union-attr]
        keys = request["response_format"]["json_schema"]["schema"]["required"]
        return {key: {"verdict": verdict_of(key in gold[title]), "reason": "Checked."} for key in keys}

    return respond


@pytest.fixture
def judge_source(openai_server: OpenAIServer, llm_settings: Any) -> LLMSource:
    return LLMSource.objects.create(
        name="judge", base_url=openai_server.url, model="test-model", probed_at=timezone.now()
    )


def test_a_judge_that_agrees_with_gold_reports_the_precision_and_a_kappa_of_1(
    tiny: Path, judge_source: LLMSource, openai_server: OpenAIServer, staff_browser: Client
) -> None:
    openai_server.reply_computed(_gold_judge(lambda in_gold: "relevant" if in_gold else "not_relevant"), times=40)

    out, _ = _evaluate(str(tiny), "--folds", "2", "--judge", "judge")

    run = EvaluationRun.objects.get()
    judge = run.metrics["judge"]
    assert (judge["source"], judge["prompt_version"]) == ("judge", "judging-default v1")
    assert (judge["failures"], judge["missing_verdicts"], judge["unknown_dropped"]) == (0, 0, 0)
    assert judge["recipes_judged"] == len(openai_server.requests)
    # Judging by gold, the judge's precision is the measured one, and it agrees with gold entirely.
    assert judge["judged_precision"] == pytest.approx(run.metrics["overall"]["precision"], abs=1e-4)
    for slug in ("cuisine", "course"):
        assert judge["categories"][slug]["judged_precision"] == pytest.approx(
            run.metrics["categories"][slug]["precision"], abs=1e-4
        )
    assert judge["gold_compared"] == judge["judged"]
    assert judge["kappa"] in (1.0, None)  # None only if every judged tag were right
    assert f"LLM judge judge (judging-default v1): {judge['recipes_judged']} recipes judged, 0 failed" in out
    assert f"Judged precision {judge['judged_precision']:.3f} (relevant 1, partly 0.5, not 0)" in out
    page = staff_browser.get(run.get_absolute_url()).content.decode()
    assert "The LLM judge" in page
    assert f"<strong>{judge['judged_precision']:.3f}</strong> (relevant 1, partly 0.5, not 0)" in page


def test_a_judge_that_finds_every_tag_partly_relevant_gives_half_precision_and_a_kappa_of_0(
    tiny: Path, judge_source: LLMSource, openai_server: OpenAIServer
) -> None:
    openai_server.reply_computed(_gold_judge(lambda in_gold: "partly"), times=40)

    out, _ = _evaluate(str(tiny), "--folds", "2", "--judge", "judge")

    judge = EvaluationRun.objects.get().metrics["judge"]
    assert judge["judged_precision"] == 0.5
    assert judge["categories"]["cuisine"]["verdicts"]["partly"] == judge["categories"]["cuisine"]["judged"]
    assert judge["kappa"] == 0.0
    assert f"Agreement with gold on {judge['gold_compared']} tags: Cohen's kappa 0.000" in out


def test_an_unknown_judge_source_is_refused_before_evaluating(tiny: Path, llm_settings: Any) -> None:
    with pytest.raises(CommandError, match="The judge cannot be asked"):
        _evaluate(str(tiny), "--folds", "2", "--judge", "nowhere")

    assert not EvaluationRun.objects.exists()
