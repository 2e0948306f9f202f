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
A logistic regression per category (or the average of several, see tagging.stacking) turns them into one
score per tag, calibrated on out-of-fold scores into the probability that a reviewer accepts the tag
(tagging.calibration), and a threshold per category, fitted to maximise F1 (with a floor under
precision only where staff set one for the category), decides what is returned. Training signals are
computed without the recipe itself (it is left out of its own neighbours, prototypes and prior), so that
the weights and thresholds are fitted on the kind of evidence the tagger will see for new recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from autotagger.recipe_text import RecipeText
from tagging.calibration import Calibration
from tagging.features import LexicalIndex, RecipeWords, dense_features, lexical_words
from tagging.signals import loo_prototype_similarity, neighbour_features, normalise, prior, row_products
from tagging.stacking import FEATURES, fit_stack, sigmoid

# What a fitted model reads of a recipe. A stored state fitted with another version leaves the tagger
# zero-shot until the periodic check refits it.
MODEL_VERSION = 3
NEIGHBOURS = 25


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

    # Derived once per spec (a loaded state keeps its specs for as long as it is in use).
    @cached_property
    def matrix(self) -> np.ndarray:
        return np.stack([t.embedding for t in self.tags]).astype(np.float32)

    @cached_property
    def lexical_index(self) -> LexicalIndex:
        return LexicalIndex([(t.name, t.synonyms) for t in self.tags])

    def tag_matrix(self) -> np.ndarray:
        return self.matrix


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
    threshold: float  # on calibrated scores
    prototypes: np.ndarray  # (T, d), zero rows for tags without examples
    support: np.ndarray  # (T,) labelled recipes per tag
    labelled: int  # recipes labelled in this category
    fit_f1: float = 0.0  # cross-validated on the training recipes
    signals: str = "all"  # which group of signals won on the training recipes
    calibration: Calibration = field(default_factory=Calibration)
    precision_floor: float | None = None  # the category's, when it was fitted

    @cached_property
    def _prototype_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The tags with a prototype (labelled at least once) and their rows: the others' are zero rows."""
        rows = np.flatnonzero(np.any(self.prototypes != 0, axis=1))
        return rows, np.ascontiguousarray(self.prototypes[rows])

    def prototype_similarities(self, embeddings: np.ndarray) -> np.ndarray:
        """(m, T) cosine similarity of each recipe to each tag's prototype (0 for a tag nobody labelled). Only
        the labelled tags' rows are multiplied: they are as many as the labels allow, however many tags the
        category has."""
        rows, matrix = self._prototype_rows
        sims = np.zeros((len(embeddings), len(self.prototypes)), dtype=np.result_type(embeddings, self.prototypes))
        if len(rows):
            sims[:, rows] = row_products(embeddings, matrix)
        return sims

    def stacked_logits(self, features: np.ndarray) -> np.ndarray:
        """(m, T) logits of the stacking regression from (m, T, len(FEATURES)) signals. Summed along the
        signals for each tag on its own, so that a recipe's logits do not depend on the batch it is in."""
        return (features * self.weights).sum(axis=2) + self.bias

    def scores(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from the stacked scores."""
        return self.calibration.apply(raw).astype(np.float32)

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
            "calibration": self.calibration.to_parameters(),
            "precision_floor": self.precision_floor,
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


def _features(
    *,
    embeddings: np.ndarray,
    lexical: np.ndarray,
    tag_matrix: np.ndarray,
    vote: np.ndarray,
    mass: np.ndarray,
    prototype_sims: np.ndarray,
    prior: np.ndarray,
    text_probs: np.ndarray,
) -> np.ndarray:
    """(m, T, len(FEATURES))."""
    zero_shot = row_products(embeddings, tag_matrix)
    zero_shot_gap = zero_shot - zero_shot.max(axis=1, keepdims=True)
    prototype_gap = prototype_sims - prototype_sims.max(axis=1, keepdims=True)
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


class TextClassifier:
    """TF-IDF of word 1–2-grams with one logistic regression per tag (one-vs-rest), per category.

    The training recipes get out-of-fold probabilities (from `folds` models that did not see them),
    which is what the stacking regression learns from; new recipes get the model fitted on all of them.

    The regressions are kept as fitted (a stored state unpickles them), but predictions go through one
    coefficient matrix per category, derived from them once: liblinear's binary `predict_proba` is the
    sigmoid of X @ coef.T + intercept, so one sparse-dense product scores every tag of a category at once
    instead of one `predict_proba` call per tag.
    """

    def __init__(self, *, folds: int = 3, max_features: int = 30_000, c: float = 10.0) -> None:
        self.folds = folds
        self.max_features = max_features
        self.c = c
        self.vectorizer: Any = None
        self.models: dict[str, list[Any]] = {}
        self.uses_dense = False
        self.dense_width = 0
        self._linear: dict[str, LinearColumns] | None = None

    def fit(
        self,
        documents: Sequence[str],
        labels: dict[str, np.ndarray],
        dense: np.ndarray | None = None,
        *,
        out_of_fold: bool = True,
    ) -> dict[str, np.ndarray]:
        """Fit the fold models; returns the out-of-fold probabilities of the training documents (none
        without `out_of_fold`: only the model fitted on all of them). With `dense` (one row per
        document), the row joins the document's TF-IDF row (and must then be given to `probabilities`
        too)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(
            ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=self.max_features
        )
        self.uses_dense = dense is not None
        self.dense_width = 0 if dense is None else int(np.asarray(dense).shape[1])
        x = self._join(self.vectorizer.fit_transform(documents), dense)
        fold = np.arange(len(documents)) % self.folds
        scores: dict[str, np.ndarray] = {}
        if out_of_fold:
            scores = {slug: np.zeros(y.shape, dtype=np.float32) for slug, y in labels.items()}
            for f in range(self.folds):
                inside, outside = fold != f, fold == f
                for slug, y in labels.items():
                    columns = self._fit_columns(x[inside], y[inside])
                    scores[slug][outside] = self._predict_columns(columns, x[outside])
        self.models = {slug: self._fit_columns(x, y) for slug, y in labels.items()}
        self._linear = None
        return scores

    def probabilities(self, documents: Sequence[str], dense: np.ndarray | None = None) -> dict[str, np.ndarray]:
        x = self._join(self.vectorizer.transform(documents), dense)
        linear = self._linear_models()
        return {slug: linear[slug].predict(x) for slug in self.models}

    def _linear_models(self) -> dict[str, LinearColumns]:
        # Derived on first use and kept out of the pickle (__getstate__): states stored by earlier releases
        # load as they are, and a refit (which replaces `models`) starts afresh.
        linear: dict[str, LinearColumns] | None = getattr(self, "_linear", None)
        if linear is None or linear.keys() != self.models.keys():
            linear = {slug: LinearColumns.of(columns) for slug, columns in self.models.items()}
            self._linear = linear
        return linear

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_linear", None)
        return state

    def _join(self, tfidf: Any, dense: np.ndarray | None) -> Any:
        if not self.uses_dense:
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
        return LinearColumns.of(models).predict(x)


@dataclass(frozen=True)
class LinearColumns:
    """A category's per-tag regressions as one linear map: the columns `fitted` of the result are
    sigmoid(x @ weights + intercepts), the others the constant their tag's labels had in training."""

    width: int
    fitted: np.ndarray  # (F,) column numbers of the fitted regressions
    weights: np.ndarray  # (features, F), float64 as liblinear's coefficients
    intercepts: np.ndarray  # (F,)
    constants: np.ndarray  # (width,): the constant columns' values, 0 where a regression was fitted

    @classmethod
    def of(cls, models: Sequence[Any]) -> LinearColumns:
        fitted = [j for j, model in enumerate(models) if not isinstance(model, float)]
        constants = np.array([model if isinstance(model, float) else 0.0 for model in models], dtype=np.float64)
        if fitted:
            weights = np.stack([np.asarray(models[j].coef_[0], dtype=np.float64) for j in fitted], axis=1)
            intercepts = np.array([float(models[j].intercept_[0]) for j in fitted], dtype=np.float64)
        else:
            weights, intercepts = np.zeros((0, 0)), np.zeros(0)
        return cls(
            width=len(models),
            fitted=np.asarray(fitted, dtype=np.int64),
            weights=weights,
            intercepts=intercepts,
            constants=constants,
        )

    def predict(self, x: Any) -> np.ndarray:
        """(m, width) probabilities of the rows of `x` (sparse or dense)."""
        from scipy.special import expit

        scores = np.tile(self.constants.astype(np.float32), (x.shape[0], 1))
        if len(self.fitted):
            logits = np.asarray(x @ self.weights) + self.intercepts
            scores[:, self.fitted] = expit(logits)
        return scores


# Evidence of a learned tag: at most this many of the nearest labelled recipes that carry it.
EVIDENCE_NEIGHBOURS = 5


@dataclass
class Explained:
    """What `LearnedModel.probabilities_explained` computed on the way to its probabilities, to say why a
    tag scored as it did without computing anything twice."""

    features: dict[str, np.ndarray]  # category slug -> (m, T, len(FEATURES))
    indices: np.ndarray  # (m, k) rows of the nearest labelled recipes, nearest first
    sims: np.ndarray  # (m, k)


@dataclass
class LearnedModel:
    categories: dict[str, CategoryModel]
    specs: dict[str, CategorySpec]
    neighbours: Neighbours
    neighbour_labels: dict[str, np.ndarray]  # category slug -> (n_labelled, T)
    text_model: TextClassifier
    # Row of the label matrices -> (recipe id, title) of that labelled recipe; the id is None for recipes
    # that are not stored (a fit on a file).
    examples: dict[int, tuple[int | None, str]] = field(default_factory=dict)

    def probabilities(
        self, *, embeddings: np.ndarray, texts: Sequence[RecipeText], category_slugs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Category slug -> (m, T) calibrated probabilities, columns in the category model's tag order."""
        return self.probabilities_explained(embeddings=embeddings, texts=texts, category_slugs=category_slugs)[0]

    def probabilities_explained(
        self,
        *,
        embeddings: np.ndarray,
        texts: Sequence[RecipeText],
        category_slugs: Sequence[str],
        read: Sequence[tuple[dict[str, str], RecipeWords]] | None = None,
    ) -> tuple[dict[str, np.ndarray], Explained]:
        """`probabilities`, and what they were computed from (for `evidence`). `read`: each recipe's lexical fields
        and their words (`LexicalIndex.evidence_matrix`), when the caller has them already."""
        if read is None:
            read = [(fields, lexical_words(fields)) for fields in (text.lexical_fields() for text in texts)]
        indices, sims = self.neighbours.nearest(embeddings, NEIGHBOURS, exclude_self=False)
        text_probs = self.text_model.probabilities([t.for_embedding() for t in texts], dense_features(texts))
        result = {}
        explained = Explained(features={}, indices=indices, sims=sims)
        for slug in category_slugs:
            model = self.categories.get(slug)
            if model is None:
                continue
            spec = self.specs[slug]
            vote, mass = neighbour_features(indices, sims, self.neighbour_labels[slug])
            features = _features(
                embeddings=embeddings,
                lexical=spec.lexical_index.evidence_matrix(texts, read),
                tag_matrix=spec.matrix,
                vote=vote,
                mass=mass,
                prototype_sims=model.prototype_similarities(embeddings),
                prior=prior(model.support, model.labelled),
                text_probs=text_probs[slug],
            )
            explained.features[slug] = features
            result[slug] = model.scores(sigmoid(model.stacked_logits(features)))
        return result, explained

    def evidence(self, *, explained: Explained, category_slug: str, row: int, column: int) -> dict[str, Any]:
        """Why tag `column` of a category scored as it did for recipe `row`: "signals", each signal's signed
        share of the stacked logit (weight × value over the sum of the absolute contributions; signals
        the category's model does not use are left out), and "neighbours", the nearest labelled recipes
        (at most EVIDENCE_NEIGHBOURS, nearest first) that carry the tag."""
        model = self.categories[category_slug]
        contributions = explained.features[category_slug][row, column] * model.weights
        total = float(np.abs(contributions).sum())
        signals = {}
        if total > 0.0:
            # As Python floats (each float32 exactly), compared and divided as before, without a numpy scalar each.
            signals = {
                name: round(c / total, 3)
                for name, c, w in zip(FEATURES, contributions.tolist(), model.weights.tolist(), strict=True)
                if w != 0.0
            }
        indices = explained.indices[row]
        carrying = (explained.sims[row] > -1.0) & (self.neighbour_labels[category_slug][indices, column] > 0)
        neighbours: list[dict[str, Any]] = []
        for index in indices[np.flatnonzero(carrying)[:EVIDENCE_NEIGHBOURS]].tolist():
            recipe_id, title = self.examples.get(index, (None, ""))
            neighbours.append({"recipe_id": recipe_id, "title": title})
        return {"signals": signals, "neighbours": neighbours}

    def predict(
        self, *, embeddings: np.ndarray, texts: Sequence[RecipeText], category_slugs: Sequence[str], k: int
    ) -> list[dict[str, list[tuple[str, float]]]]:
        """For each recipe, category slug -> [(tag slug, probability)] above the category's threshold,
        best first, at most k."""
        probabilities = self.probabilities(embeddings=embeddings, texts=texts, category_slugs=category_slugs)
        return self.choose(probabilities, k=k, rows=len(embeddings))

    def choose(
        self, probabilities: dict[str, np.ndarray], *, k: int, rows: int
    ) -> list[dict[str, list[tuple[str, float]]]]:
        """What `predict` returns, from `probabilities` (as `probabilities` returns them)."""
        results: list[dict[str, list[tuple[str, float]]]] = [{} for _ in range(rows)]
        for slug, matrix in probabilities.items():
            model = self.categories[slug]
            for i, row in enumerate(matrix):
                order = np.argsort(-row, kind="stable")[:k]
                results[i][slug] = [(model.tag_slugs[j], float(row[j])) for j in order if row[j] >= model.threshold]
        return results


def fit(
    *,
    data: LabelledSet,
    categories: Sequence[CategorySpec],
    k: int,
    min_labelled: int = 5,
    precision_floors: dict[str, float | None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LearnedModel:
    """Learn weights, prototypes, calibrations and thresholds for every category with at least
    `min_labelled` labelled recipes. Categories with fewer are left to the zero-shot tagger. A category's
    threshold maximises cross-validated F1, among those keeping precision at or above its entry in
    `precision_floors` when it has one."""
    # One BLAS thread: the fit is thousands of small products and regressions, for which OpenBLAS threads
    # cost more in hand-offs than they gain (bench/fit_threads.py: 1.6 times as long with two threads on
    # an idle two-core machine, several times as long on a busy one).
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(
            data=data,
            categories=categories,
            k=k,
            min_labelled=min_labelled,
            precision_floors=precision_floors,
            progress=progress,
        )


def _fit(
    *,
    data: LabelledSet,
    categories: Sequence[CategorySpec],
    k: int,
    min_labelled: int,
    precision_floors: dict[str, float | None] | None,
    progress: Callable[[str], None] | None,
) -> LearnedModel:
    floors = precision_floors or {}

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
        prototypes = normalise(sums)
        # Leave-one-out prototypes and prior: a recipe's own labels must not explain it.
        prototype_sims = loo_prototype_similarity(embeddings, y, sums)
        loo_support = support[None, :] - y
        loo_labelled = labelled - labelled_rows.astype(np.float32)
        prior = np.log((loo_support + 1.0) / (loo_labelled[:, None] + len(support) + 1.0))
        vote, mass = neighbour_features(indices, sims, y)
        features = _features(
            embeddings=embeddings,
            lexical=category.lexical_index.evidence_matrix(data.texts),
            tag_matrix=category.matrix,
            vote=vote,
            mass=mass,
            prototype_sims=prototype_sims,
            prior=prior,
            text_probs=text_oof[category.slug],
        )
        target = y.ravel()
        if target.min() == target.max():
            continue
        floor = floors.get(category.slug)
        stack = fit_stack(features, y, k, precision_floor=floor)
        models[category.slug] = CategoryModel(
            slug=category.slug,
            tag_slugs=[t.slug for t in category.tags],
            weights=stack.weights,
            bias=stack.bias,
            threshold=stack.threshold,
            prototypes=prototypes,
            support=support,
            labelled=labelled,
            fit_f1=stack.f1,
            signals=stack.signals,
            calibration=stack.calibration,
            precision_floor=floor,
        )
        if progress:
            progress(
                f"{category.slug}: {labelled} labelled recipes, signals {stack.signals}, "
                f"calibration {stack.calibration.method}, threshold {stack.threshold:.3f}"
                + (f" (precision floor {floor:.2f})" if floor is not None else "")
                + f", cross-validated F1 {stack.f1:.3f}"
            )
    return LearnedModel(
        categories=models,
        specs={c.slug: c for c in categories},
        neighbours=neighbours,
        neighbour_labels=labels.matrices,
        text_model=text_model,
        examples={row: (None, text.title) for row, text in enumerate(data.texts)},
    )
