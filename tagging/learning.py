"""The learned part of the similarity tagger: pure numpy and scikit-learn, no database.

For a recipe r and a tag t of category c it computes a few signals:
- zero-shot: cosine similarity of r to the tag's own embedding (its name and description), and how far
  that trails the category's best tag;
- neighbours: the similarity-weighted share of r's K nearest labelled recipes that carry t, and the
  share of those neighbours labelled in c at all (so the tagger can abstain where such recipes have no
  tag in c);
- prototype: cosine similarity of r to the mean embedding of the recipes labelled t;
- lexical: t's name or a synonym written in the title, ingredients or instructions;
- prior: how common t is among labelled recipes;
- text model: a TF-IDF (word 1–2-grams) logistic regression per tag, which learns the words that
  signal a tag (cheese and eggs for "cheesefare", not just the tag's own name), and reads the
  recipe's structure too (how many ingredients, how long the method: "quick" is in no word) and the
  kinds of ingredient it names (meat, seafood, dairy, eggs, ...: a diet learned on beef recipes
  carries to pork ones).
A logistic regression per category (or the average of several, see _fit_stack) turns them into one
calibrated probability per tag, and a threshold per category, fitted to maximise F1 (with a floor
under precision), decides what is returned. Training signals are computed without the recipe itself
(it is left out of its own neighbours, prototypes and prior), so that the weights and thresholds are
fitted on the kind of evidence the tagger will see for new recipes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

# What a fitted model reads of a recipe. A stored state fitted with another version is refitted by the
# periodic check; versions in COMPATIBLE_VERSIONS serve meanwhile (version 1's text model read words only,
# which this code still serves), others leave the tagger zero-shot until then.
MODEL_VERSION = 2
COMPATIBLE_VERSIONS = frozenset({1, 2})
NEIGHBOURS = 25
NEIGHBOUR_SHARPNESS = 20.0  # weight of a neighbour: exp(SHARPNESS * (similarity - 1))
PRECISION_FLOOR = 0.35
LEXICAL_WEIGHTS = {"title": 1.0, "ingredients": 0.75, "instructions": 0.4}
FEATURES = (
    "zero_shot",
    "zero_shot_gap",
    "neighbour_vote",
    "neighbour_mass",
    "prototype",
    "prototype_gap",
    "lexical",
    "prior",
    "text_model",
    "text_model_gap",
)


@dataclass(frozen=True)
class RecipeText:
    title: str
    ingredients: Sequence[str]
    instructions: str

    def for_embedding(self) -> str:
        ingredients = "; ".join(i.strip() for i in self.ingredients if i.strip())
        parts = [self.title.strip() + "."]
        if ingredients:
            parts.append(f"Ingredients: {ingredients}.")
        if self.instructions.strip():
            parts.append(self.instructions.strip())
        return " ".join(parts)

    def lexical_fields(self) -> dict[str, str]:
        return {
            "title": self.title.lower(),
            "ingredients": "\n".join(self.ingredients).lower(),
            "instructions": self.instructions.lower(),
        }


@lru_cache(maxsize=8192)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    words = [re.escape(p.lower()) for p in phrases if len(p.strip()) >= 3]
    if not words:
        return None
    # Plural forms count ("lentils", "tomatoes"), longer words do not ("minced" is not "mince").
    return re.compile(r"(?<![\w-])(?:" + "|".join(words) + r")(?:s|es)?(?![\w-])")


def lexical_evidence(name: str, synonyms: Sequence[str], fields: dict[str, str]) -> float:
    """LEXICAL_WEIGHTS of the best field that mentions the tag's name or a synonym; 0 if none does."""
    pattern = phrase_pattern(tuple(sorted({name, *synonyms})))
    if pattern is None:
        return 0.0
    return max((LEXICAL_WEIGHTS[key] for key, text in fields.items() if pattern.search(text)), default=0.0)


@dataclass(frozen=True)
class TagSpec:
    slug: str
    name: str
    synonyms: tuple[str, ...]
    embedding: np.ndarray  # unit vector of the tag's text


@dataclass(frozen=True)
class CategorySpec:
    slug: str
    tags: tuple[TagSpec, ...]

    def tag_matrix(self) -> np.ndarray:
        return np.stack([t.embedding for t in self.tags]).astype(np.float32)


@dataclass
class LabelledSet:
    """Recipes with gold labels: `labels[i][category slug]` is the set of tag slugs of recipe i."""

    embeddings: np.ndarray
    texts: list[RecipeText]
    labels: list[dict[str, set[str]]]

    def __len__(self) -> int:
        return len(self.texts)


class Neighbours(Protocol):
    def nearest(self, embeddings: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
        """(indices, similarities), each (m, k): the k nearest labelled recipes of each row."""


class ArrayNeighbours:
    """Exact nearest neighbours over an in-memory matrix (fitting and evaluation)."""

    def __init__(self, embeddings: np.ndarray) -> None:
        self.embeddings = np.asarray(embeddings, dtype=np.float32)

    def nearest(self, embeddings: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.embeddings)
        k = min(k, n - 1 if exclude_self else n)
        indices = np.zeros((len(embeddings), max(k, 0)), dtype=np.int64)
        sims = np.zeros((len(embeddings), max(k, 0)), dtype=np.float32)
        if k <= 0:
            return indices, sims
        for start in range(0, len(embeddings), 1024):
            block = embeddings[start : start + 1024] @ self.embeddings.T
            if exclude_self:
                # Rows are the training recipes themselves, in order.
                rows = np.arange(block.shape[0])
                block[rows, start + rows] = -np.inf
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]
            top_sims = np.take_along_axis(block, top, axis=1)
            order = np.argsort(-top_sims, axis=1)
            indices[start : start + len(block)] = np.take_along_axis(top, order, axis=1)
            sims[start : start + len(block)] = np.take_along_axis(top_sims, order, axis=1)
        return indices, sims


@dataclass
class CategoryModel:
    slug: str
    tag_slugs: list[str]
    weights: np.ndarray  # (len(FEATURES),)
    bias: float
    threshold: float
    prototypes: np.ndarray  # (T, d), zero rows for tags without examples
    support: np.ndarray  # (T,) labelled recipes per tag
    labelled: int  # recipes labelled in this category
    fit_f1: float = 0.0  # cross-validated on the training recipes
    signals: str = "all"  # which group of signals won on the training recipes

    def to_parameters(self) -> dict[str, Any]:
        return {
            "tag_slugs": self.tag_slugs,
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "threshold": float(self.threshold),
            "support": [int(s) for s in self.support],
            "labelled": int(self.labelled),
            "fit_f1": float(self.fit_f1),
            "signals": self.signals,
        }


@dataclass
class TrainingLabels:
    """Per category: (n, T) 0/1 matrix of labels, aligned with the category's tags."""

    matrices: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, data: LabelledSet, categories: Sequence[CategorySpec]) -> TrainingLabels:
        matrices = {}
        for category in categories:
            index = {t.slug: j for j, t in enumerate(category.tags)}
            matrix = np.zeros((len(data), len(category.tags)), dtype=np.float32)
            for i, labels in enumerate(data.labels):
                for slug in labels.get(category.slug, ()):
                    if slug in index:
                        matrix[i, index[slug]] = 1.0
            matrices[category.slug] = matrix
        return cls(matrices)


def _neighbour_features(indices: np.ndarray, sims: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vote (m, T), mass (m,)) from the neighbours' labels of one category."""
    if indices.shape[1] == 0:
        return np.zeros((len(indices), labels.shape[1]), dtype=np.float32), np.zeros(len(indices), dtype=np.float32)
    weights = np.exp(NEIGHBOUR_SHARPNESS * (sims - 1.0))  # (m, k)
    neighbour_labels = labels[indices]  # (m, k, T)
    labelled = (neighbour_labels.sum(axis=2) > 0).astype(np.float32)  # (m, k)
    total = weights.sum(axis=1) + 1e-9
    labelled_weight = (weights * labelled).sum(axis=1)
    # Shares of all neighbours, not of the labelled ones: one labelled neighbour among many unlabelled
    # ones is weak evidence, not a unanimous vote.
    vote = np.einsum("mk,mkt->mt", weights, neighbour_labels) / total[:, None]
    return vote.astype(np.float32), (labelled_weight / total).astype(np.float32)


def _features(
    *,
    embeddings: np.ndarray,
    texts: Sequence[RecipeText],
    category: CategorySpec,
    tag_matrix: np.ndarray,
    vote: np.ndarray,
    mass: np.ndarray,
    prototype_sims: np.ndarray,
    prior: np.ndarray,
    text_probs: np.ndarray,
) -> np.ndarray:
    """(m, T, len(FEATURES))."""
    zero_shot = embeddings @ tag_matrix.T
    zero_shot_gap = zero_shot - zero_shot.max(axis=1, keepdims=True)
    prototype_gap = prototype_sims - prototype_sims.max(axis=1, keepdims=True)
    lexical = np.zeros_like(zero_shot)
    for i, text in enumerate(texts):
        fields = text.lexical_fields()
        for j, tag in enumerate(category.tags):
            lexical[i, j] = lexical_evidence(tag.name, tag.synonyms, fields)
    mass_matrix = np.repeat(mass[:, None], zero_shot.shape[1], axis=1)
    prior_matrix = np.broadcast_to(prior, zero_shot.shape)
    text_gap = text_probs - text_probs.max(axis=1, keepdims=True)
    return np.stack(
        [
            zero_shot,
            zero_shot_gap,
            vote,
            mass_matrix,
            prototype_sims,
            prototype_gap,
            lexical,
            prior_matrix,
            text_probs,
            text_gap,
        ],
        axis=2,
    ).astype(np.float32)


def _prior(support: np.ndarray, labelled: int | np.ndarray) -> np.ndarray:
    return np.log((support + 1.0) / (np.asarray(labelled, dtype=np.float32)[..., None] + len(support) + 1.0))


def fit_threshold(scores: np.ndarray, truth: np.ndarray, k: int) -> tuple[float, float]:
    """The threshold that maximises micro-F1 of "scores >= threshold, at most k per recipe", among
    those keeping precision at or above PRECISION_FLOOR when any does. Returns (threshold, F1)."""
    m, t = scores.shape
    if m == 0 or t == 0:
        return 1.0, 0.0
    k = min(k, t)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1).ravel()
    top_truth = np.take_along_axis(truth, top, axis=1).ravel()
    order = np.argsort(-top_scores, kind="stable")
    sorted_scores, sorted_truth = top_scores[order], top_truth[order]
    true_positives = np.cumsum(sorted_truth)
    predicted = np.arange(1, len(sorted_scores) + 1)
    positives = truth.sum()
    if positives == 0:
        return 1.0, 0.0
    precision = true_positives / predicted
    recall = true_positives / positives
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0.0)
    # Only cut between distinct scores, so that equal scores are always kept or dropped together.
    last_of_run = np.append(sorted_scores[1:] < sorted_scores[:-1], True)
    candidates = np.flatnonzero(last_of_run)
    floored = candidates[precision[candidates] >= PRECISION_FLOOR]
    pool = floored if len(floored) else candidates
    best = pool[np.argmax(f1[pool])]
    # Cut halfway to the next score down, or at the lowest score of all when every candidate is kept:
    # the edge of the kept scores is where new recipes, scored by a model fitted on all of them, fall
    # just short.
    below = sorted_scores[best + 1] if best + 1 < len(sorted_scores) else scores.min()
    return float((sorted_scores[best] + below) / 2), float(f1[best])


# Kinds of ingredient that decide many tags (a diet is mostly which of these are absent), so the text
# model learns one weight per kind rather than one per word it happened to see.
INGREDIENT_KINDS: dict[str, tuple[str, ...]] = {
    kind: tuple(words.split())
    for kind, words in {
        "meat": "beef pork lamb mutton veal bacon ham sausage chorizo salami pancetta prosciutto mince steak "
        "ribs goat venison meat meatball pepperoni lard gelatin keema oxtail brisket chicken turkey duck "
        "goose quail liver",
        "seafood": "fish salmon tuna cod haddock anchovy anchovies sardine mackerel trout prawn shrimp crab "
        "lobster mussel clam oyster squid scallop tilapia pomfret herring seafood",
        "dairy": "milk cheese butter cream yogurt yoghurt ghee paneer curd mozzarella parmesan cheddar feta "
        "ricotta mascarpone buttermilk khoya kefir",
        "egg": "egg eggs yolk yolks",
        "sweet": "sugar honey chocolate syrup jaggery cocoa jam vanilla caramel",
        "hot": "chili chilli chile chillies jalapeno cayenne chipotle sriracha habanero",
        "grain": "flour bread pasta spaghetti macaroni penne wheat noodles maida semolina couscous barley rice oats",
        "legume": "beans lentils lentil chickpeas dal tofu peas",
    }.items()
}


# Plant milks and butters are not dairy: a vegan curry with coconut milk must not read as one with cream.
_NOT_ANIMAL = re.compile(
    r"\b(?:coconut|almond|soy|soya|oat|rice|cashew|peanut|cocoa|nut|apple)\s+(?:milk|butter|cream)\b"
)


@lru_cache(maxsize=1)
def _kind_patterns() -> tuple[re.Pattern[str], ...]:
    return tuple(
        re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, words)) + r")(?:s|es)?(?![\w-])")
        for words in INGREDIENT_KINDS.values()
    )


def ingredient_kinds(texts: Sequence[RecipeText]) -> np.ndarray:
    """(m, len(INGREDIENT_KINDS)): for each kind, 0 when no ingredient line (nor the title) names it, else
    0.5 plus a little more for each further line that does (up to about 1 for eight lines)."""
    patterns = _kind_patterns()
    rows = []
    for t in texts:
        lines = [_NOT_ANIMAL.sub(" ", line.lower()) for line in (t.title, *t.ingredients)]
        rows.append([sum(1 for line in lines if p.search(line)) for p in patterns])
    counts = np.asarray(rows, dtype=np.float32).reshape(len(texts), len(patterns))
    return np.minimum(counts, 1.0) * 0.5 + np.log1p(counts) / 4


def dense_features(texts: Sequence[RecipeText]) -> np.ndarray:
    """The columns the text model reads beside the words: structure and ingredient kinds."""
    return np.hstack([structure(texts), ingredient_kinds(texts)])


def structure(texts: Sequence[RecipeText]) -> np.ndarray:
    """(m, 3): how long the ingredient list, the instructions and their steps are, log-scaled to about
    0..1. Quick, basic and everyday recipes are short; the words alone do not say so."""
    return np.array(
        [
            [
                np.log1p(len(t.ingredients)) / 3,
                np.log1p(len(t.instructions)) / 8,
                np.log1p(t.instructions.count("\n") + 1) / 3,
            ]
            for t in texts
        ],
        dtype=np.float32,
    ).reshape(len(texts), 3)


class TextClassifier:
    """TF-IDF of word 1–2-grams with one logistic regression per tag (one-vs-rest), per category.

    The training recipes get out-of-fold probabilities (from `folds` models that did not see them),
    which is what the stacking regression learns from; new recipes get the model fitted on all of them.
    """

    def __init__(self, *, folds: int = 3, max_features: int = 30_000, c: float = 10.0) -> None:
        self.folds = folds
        self.max_features = max_features
        self.c = c
        self.vectorizer: Any = None
        self.models: dict[str, list[Any]] = {}

    def fit(
        self, documents: Sequence[str], labels: dict[str, np.ndarray], dense: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Fit the fold models; returns the out-of-fold probabilities of the training documents.
        With `dense` (one row per document), the row joins the document's TF-IDF row (and must then
        be given to `probabilities` too)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(
            ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=self.max_features
        )
        self.uses_dense = dense is not None
        self.dense_width = 0 if dense is None else int(np.asarray(dense).shape[1])
        x = self._join(self.vectorizer.fit_transform(documents), dense)
        fold = np.arange(len(documents)) % self.folds
        out_of_fold = {slug: np.zeros(y.shape, dtype=np.float32) for slug, y in labels.items()}
        for f in range(self.folds):
            inside, outside = fold != f, fold == f
            for slug, y in labels.items():
                columns = self._fit_columns(x[inside], y[inside])
                out_of_fold[slug][outside] = self._predict_columns(columns, x[outside])
        self.models = {slug: self._fit_columns(x, y) for slug, y in labels.items()}
        return out_of_fold

    def probabilities(self, documents: Sequence[str], dense: np.ndarray | None = None) -> dict[str, np.ndarray]:
        x = self._join(self.vectorizer.transform(documents), dense)
        return {slug: self._predict_columns(columns, x) for slug, columns in self.models.items()}

    def _join(self, tfidf: Any, dense: np.ndarray | None) -> Any:
        if not getattr(self, "uses_dense", False):
            return tfidf
        from scipy import sparse

        if dense is None:
            raise ValueError("this text model was fitted with dense features: give them")
        if dense.shape[1] != self.dense_width:
            # A state fitted by an older release reads other columns: it needs a refit, not a guess.
            raise ValueError(f"this text model was fitted with {self.dense_width} dense features, not {dense.shape[1]}")
        return sparse.hstack([tfidf, sparse.csr_matrix(np.asarray(dense, dtype=np.float64))]).tocsr()

    def _fit_columns(self, x: Any, y: np.ndarray) -> list[Any]:
        from sklearn.linear_model import LogisticRegression

        models: list[Any] = []
        for j in range(y.shape[1]):
            column = y[:, j]
            if column.min() == column.max():
                models.append(float(column[0]) if len(column) else 0.0)  # constant: never or always
            else:
                models.append(LogisticRegression(C=self.c, max_iter=1000, solver="liblinear").fit(x, column))
        return models

    @staticmethod
    def _predict_columns(models: list[Any], x: Any) -> np.ndarray:
        scores = np.zeros((x.shape[0], len(models)), dtype=np.float32)
        for j, model in enumerate(models):
            scores[:, j] = model if isinstance(model, float) else model.predict_proba(x)[:, 1]
        return scores


@dataclass
class LearnedModel:
    categories: dict[str, CategoryModel]
    specs: dict[str, CategorySpec]
    neighbours: Neighbours
    neighbour_labels: dict[str, np.ndarray]  # category slug -> (n_labelled, T)
    text_model: TextClassifier

    def probabilities(
        self, *, embeddings: np.ndarray, texts: Sequence[RecipeText], category_slugs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Category slug -> (m, T) calibrated probabilities, columns in the category model's tag order."""
        indices, sims = self.neighbours.nearest(embeddings, NEIGHBOURS, exclude_self=False)
        text_probs = self.text_model.probabilities([t.for_embedding() for t in texts], dense_features(texts))
        result = {}
        for slug in category_slugs:
            model = self.categories.get(slug)
            if model is None:
                continue
            spec = self.specs[slug]
            vote, mass = _neighbour_features(indices, sims, self.neighbour_labels[slug])
            features = _features(
                embeddings=embeddings,
                texts=texts,
                category=spec,
                tag_matrix=spec.tag_matrix(),
                vote=vote,
                mass=mass,
                prototype_sims=embeddings @ model.prototypes.T,
                prior=_prior(model.support, model.labelled),
                text_probs=text_probs[slug],
            )
            result[slug] = _sigmoid(features @ model.weights + model.bias)
        return result

    def predict(
        self, *, embeddings: np.ndarray, texts: Sequence[RecipeText], category_slugs: Sequence[str], k: int
    ) -> list[dict[str, list[tuple[str, float]]]]:
        """For each recipe, category slug -> [(tag slug, probability)] above the category's threshold,
        best first, at most k."""
        probabilities = self.probabilities(embeddings=embeddings, texts=texts, category_slugs=category_slugs)
        results: list[dict[str, list[tuple[str, float]]]] = [{} for _ in range(len(embeddings))]
        for slug, matrix in probabilities.items():
            model = self.categories[slug]
            for i, row in enumerate(matrix):
                order = np.argsort(-row, kind="stable")[:k]
                results[i][slug] = [(model.tag_slugs[j], float(row[j])) for j in order if row[j] >= model.threshold]
        return results


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def fit(
    *,
    data: LabelledSet,
    categories: Sequence[CategorySpec],
    k: int = 3,
    min_labelled: int = 5,
    progress: Callable[[str], None] | None = None,
) -> LearnedModel:
    """Learn weights, prototypes and thresholds for every category with at least `min_labelled`
    labelled recipes. Categories with fewer are left to the zero-shot tagger."""

    labels = TrainingLabels.build(data, categories)
    embeddings = np.asarray(data.embeddings, dtype=np.float32)
    neighbours = ArrayNeighbours(embeddings)
    indices, sims = neighbours.nearest(embeddings, NEIGHBOURS, exclude_self=True)
    fitted = {
        c.slug: labels.matrices[c.slug]
        for c in categories
        if int((labels.matrices[c.slug].sum(axis=1) > 0).sum()) >= min_labelled and c.tags
    }
    documents = [t.for_embedding() for t in data.texts]
    text_model = TextClassifier()
    text_oof = text_model.fit(documents, fitted, dense_features(data.texts))
    models: dict[str, CategoryModel] = {}
    for category in categories:
        y = labels.matrices[category.slug]
        labelled_rows = y.sum(axis=1) > 0
        labelled = int(labelled_rows.sum())
        if category.slug not in fitted:
            continue
        support = y.sum(axis=0)
        sums = y.T @ embeddings  # (T, d)
        prototypes = _normalise(sums)
        # Leave-one-out prototypes and prior: a recipe's own labels must not explain it.
        prototype_sims = _loo_prototype_similarity(embeddings, y, sums)
        loo_support = support[None, :] - y
        loo_labelled = labelled - labelled_rows.astype(np.float32)
        prior = np.log((loo_support + 1.0) / (loo_labelled[:, None] + len(support) + 1.0))
        vote, mass = _neighbour_features(indices, sims, y)
        features = _features(
            embeddings=embeddings,
            texts=data.texts,
            category=category,
            tag_matrix=category.tag_matrix(),
            vote=vote,
            mass=mass,
            prototype_sims=prototype_sims,
            prior=prior,
            text_probs=text_oof[category.slug],
        )
        target = y.ravel()
        if target.min() == target.max():
            continue
        weights, bias, threshold, f1, signals = _fit_stack(features, y, k)
        models[category.slug] = CategoryModel(
            slug=category.slug,
            tag_slugs=[t.slug for t in category.tags],
            weights=weights,
            bias=bias,
            threshold=threshold,
            prototypes=prototypes,
            support=support,
            labelled=labelled,
            fit_f1=f1,
            signals=signals,
        )
        if progress:
            progress(
                f"{category.slug}: {labelled} labelled recipes, signals {signals}, "
                f"threshold {threshold:.3f}, cross-validated F1 {f1:.3f}"
            )
    return LearnedModel(
        categories=models,
        specs={c.slug: c for c in categories},
        neighbours=neighbours,
        neighbour_labels=labels.matrices,
        text_model=text_model,
    )


# Groups of signals the stacking regression may use. Which one serves a category best depends on its
# labels (a diet that only ingredient words reveal, a cuisine its neighbours know), so each category
# takes the group, or the average of all groups, with the best cross-validated F1 on its training recipes.
SIGNAL_GROUPS: dict[str, tuple[str, ...]] = {
    "all": FEATURES,
    "text_model": ("text_model",),
    "text": ("text_model", "text_model_gap", "lexical", "prior"),
    "embedding": (
        "zero_shot",
        "zero_shot_gap",
        "neighbour_vote",
        "neighbour_mass",
        "prototype",
        "prototype_gap",
        "prior",
    ),
    "text+neighbours": ("text_model", "text_model_gap", "neighbour_vote", "neighbour_mass", "lexical", "prior"),
}
# Five folds, not three, each time on two assignments of recipes to folds: the choice between groups was
# the noisiest step on small label sets.
STACK_FOLDS = 5
STACK_REPEATS = 2
# Inverse regularisation of the stacking regression: its few signals are on different scales, and
# C=1 shrank the informative ones (cross-validated on the shared datasets, 10 beat 0.05, 1, 100, 1000).
STACK_C = 10.0


def _fit_stack(features: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, float, float, float, str]:
    """(weights over FEATURES, bias, threshold, cross-validated F1, signals) for one category.

    The candidates are a regression on each group of signals and the average of all of them (in log-odds,
    so still one linear model); the one with the best cross-validated F1, over STACK_REPEATS assignments
    of recipes to folds, wins. On a few dozen labelled recipes the choice of one group is noisy, and the
    average often generalises better."""
    from sklearn.linear_model import LogisticRegression

    n, t, _ = features.shape
    rng = np.random.default_rng(0)
    folds = [np.arange(n) % STACK_FOLDS] + [rng.permutation(n) % STACK_FOLDS for _ in range(STACK_REPEATS - 1)]
    # group -> logits (repeats * n, t): cross-validated on each fold assignment, stacked.
    logits_by_group: dict[str, np.ndarray] = {}
    for group, names in SIGNAL_GROUPS.items():
        columns = [FEATURES.index(name) for name in names]
        stacked = []
        for fold in folds:
            logits = np.zeros((n, t), dtype=np.float64)
            for f in range(STACK_FOLDS):
                inside, outside = fold != f, fold == f
                y_in = y[inside].ravel()
                if y_in.min() == y_in.max():
                    continue
                model = LogisticRegression(C=STACK_C, max_iter=500).fit(
                    features[inside][:, :, columns].reshape(-1, len(columns)), y_in
                )
                logits[outside] = model.decision_function(
                    features[outside][:, :, columns].reshape(-1, len(columns))
                ).reshape(-1, t)
            stacked.append(logits)
        logits_by_group[group] = np.concatenate(stacked)
    y_repeated = np.concatenate([y] * len(folds))
    scored = [(fit_threshold(logits, y_repeated, k)[1], group) for group, logits in logits_by_group.items()]
    best_f1, best_group = max(scored)
    average = np.mean(list(logits_by_group.values()), axis=0)
    chosen = list(logits_by_group) if fit_threshold(average, y_repeated, k)[1] > best_f1 + 1e-9 else [best_group]
    weights = np.zeros(len(FEATURES), dtype=np.float64)
    bias = 0.0
    for group in chosen:
        columns = [FEATURES.index(name) for name in SIGNAL_GROUPS[group]]
        model = LogisticRegression(C=STACK_C, max_iter=500).fit(
            features[:, :, columns].reshape(-1, len(columns)), y.ravel()
        )
        weights[columns] += model.coef_[0] / len(chosen)
        bias += float(model.intercept_[0]) / len(chosen)
    # The threshold comes from the cross-validated scores: in-sample ones would be optimistic.
    scores = _sigmoid(np.mean([logits_by_group[group] for group in chosen], axis=0))
    threshold, f1 = fit_threshold(scores, y_repeated, k)
    signals = "average" if len(chosen) > 1 else best_group
    return weights.astype(np.float32), bias, threshold, f1, signals


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)


def _loo_prototype_similarity(embeddings: np.ndarray, y: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """cos(recipe i, prototype of tag j without recipe i), for all i, j: (n, T)."""
    # sim = (e_i . (S_j - y_ij e_i)) / |S_j - y_ij e_i|, with |e_i| = 1.
    dots = embeddings @ sums.T  # (n, T)
    sum_norms_sq = (sums * sums).sum(axis=1)  # (T,)
    loo_dots = dots - y  # e_i . e_i = 1
    loo_norms_sq = sum_norms_sq[None, :] - 2 * y * dots + y
    loo_norms = np.sqrt(np.maximum(loo_norms_sq, 0.0))
    return np.where(loo_norms > 1e-6, loo_dots / np.maximum(loo_norms, 1e-6), 0.0).astype(np.float32)
