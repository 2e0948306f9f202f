"""The arithmetic of the learned tagger's embedding signals: neighbour votes, prototypes and priors (pure numpy)."""

from __future__ import annotations

import numpy as np

NEIGHBOUR_SHARPNESS = 20.0  # weight of a neighbour: exp(SHARPNESS * (similarity - 1))


def neighbour_features(indices: np.ndarray, sims: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def row_products(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(m, T): each of the m `vectors` dotted with each row of `matrix`, one matrix-vector product per vector.

    A recipe gets the same arithmetic alone as in a batch: one product for the whole batch may sum in another
    order (BLAS blocks by the batch's shape), which moves the last digit of a score now and then, and the
    batched tagger (SimilarityTagger.tag_many) must return exactly what tagging each recipe alone returns.
    The cost is the same number of multiplications, read from a matrix that stays in cache."""
    if len(vectors) == 0 or matrix.shape[0] == 0:
        return np.zeros((len(vectors), matrix.shape[0]), dtype=np.result_type(vectors, matrix))
    return np.stack([matrix @ vector for vector in vectors])


def prior(support: np.ndarray, labelled: int | np.ndarray) -> np.ndarray:
    return np.log((support + 1.0) / (np.asarray(labelled, dtype=np.float32)[..., None] + len(support) + 1.0))


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)


def loo_prototype_similarity(embeddings: np.ndarray, y: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """cos(recipe i, prototype of tag j without recipe i), for all i, j: (n, T)."""
    # sim = (e_i . (S_j - y_ij e_i)) / |S_j - y_ij e_i|, with |e_i| = 1.
    dots = embeddings @ sums.T  # (n, T)
    sum_norms_sq = (sums * sums).sum(axis=1)  # (T,)
    loo_dots = dots - y  # e_i . e_i = 1
    loo_norms_sq = sum_norms_sq[None, :] - 2 * y * dots + y
    loo_norms = np.sqrt(np.maximum(loo_norms_sq, 0.0))
    return np.where(loo_norms > 1e-6, loo_dots / np.maximum(loo_norms, 1e-6), 0.0).astype(np.float32)
