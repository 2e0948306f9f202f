"""autotagger.embeddings, fast mode: a static model2vec model distilled from the local model, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from autotagger.embeddings import (
    EmbeddingMode,
    FastModelMissing,
    embedding_fast_distill,
    embedding_model_name,
    embeddings_create,
    fast_model_available,
)


def test_the_distilled_model_is_stored_where_the_settings_say(fast_mode: Path) -> None:
    assert fast_model_available()
    assert (fast_mode / "model.safetensors").is_file()
    assert (fast_mode / "tokenizer.json").is_file()


def test_distilling_again_keeps_the_model_that_is_there(fast_mode: Path) -> None:
    before = (fast_mode / "model.safetensors").stat().st_mtime_ns

    path, seconds = embedding_fast_distill()

    assert (path, seconds) == (fast_mode, 0.0)
    assert (fast_mode / "model.safetensors").stat().st_mtime_ns == before


def test_fast_vectors_are_unit_length_of_the_configured_size_under_their_own_model_name(fast_mode: Path) -> None:
    batch = embeddings_create(texts=["Spaghetti with tomato sauce", "Lemon tart", "Miso soup"], mode="fast")

    assert batch.vectors.shape == (3, settings.EMBEDDING_DIMENSIONS)
    assert batch.vectors.dtype == np.float32
    assert np.linalg.norm(batch.vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert batch.model == embedding_model_name(mode=EmbeddingMode.FAST) == f"{settings.EMBEDDING_MODEL}/model2vec"
    assert batch.model != embedding_model_name()


def test_fast_vectors_differ_from_the_full_models(fast_mode: Path) -> None:
    text = "Chicken curry with rice and fresh coriander"

    fast = embeddings_create(texts=[text], mode="fast").vectors[0]
    full = embeddings_create(texts=[text]).vectors[0]

    assert not np.allclose(fast, full, atol=1e-3)


def test_fast_vectors_score_similar_texts_higher_than_unrelated_ones(fast_mode: Path) -> None:
    pasta, also_pasta, engine = embeddings_create(
        texts=[
            "Pasta with tomato sauce, garlic and fresh cheese",
            "Pasta in a tomato and garlic sauce",
            "How to change the oil filter of a diesel engine",
        ],
        mode="fast",
    ).vectors

    # Static vectors share a large common component, so unrelated texts score high too: the order is what counts.
    assert float(pasta @ also_pasta) - float(pasta @ engine) > 0.05


def test_fast_mode_without_a_distilled_model_names_the_command_that_makes_it(no_fast_mode: Path) -> None:
    with pytest.raises(FastModelMissing, match=r"manage\.py embedding_distill"):
        embeddings_create(texts=["Lemon tart"], mode="fast")
    assert not fast_model_available()
