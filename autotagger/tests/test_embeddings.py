"""autotagger.embeddings: the local model, and the OpenAI-compatible backend against a real local HTTP server."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.test import override_settings

from autotagger.embeddings import EmbeddingError, _get_backend, embedding_model_name, embeddings_create

DIMENSIONS = settings.EMBEDDING_DIMENSIONS


# --- local backend ----------------------------------------------------------------------------


def test_the_local_backend_returns_unit_vectors_of_the_configured_size() -> None:
    batch = embeddings_create(texts=["Spaghetti carbonara with guanciale", "Lemon tart", "Miso soup"])

    assert batch.vectors.shape == (3, settings.EMBEDDING_DIMENSIONS)
    assert batch.vectors.dtype == np.float32
    assert np.linalg.norm(batch.vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert batch.model == embedding_model_name() == settings.EMBEDDING_MODEL


def test_the_local_backend_scores_similar_texts_higher_than_unrelated_ones() -> None:
    pasta, also_pasta, car = embeddings_create(
        texts=[
            "Spaghetti with tomato sauce, garlic and fresh basil",
            "Pasta in a basil and tomato sauce",
            "How to change the oil filter of a diesel engine",
        ]
    ).vectors

    similar = float(pasta @ also_pasta)
    unrelated = float(pasta @ car)

    assert similar > 0.6
    assert similar - unrelated > 0.4


def test_the_same_text_gets_the_same_vector_in_any_batch() -> None:
    alone = embeddings_create(texts=["Chocolate mousse"]).vectors[0]

    in_batch = embeddings_create(texts=["Beef stew", "Chocolate mousse"]).vectors[1]

    assert np.allclose(alone, in_batch, atol=1e-6)


# --- OpenAI-compatible backend ----------------------------------------------------------------


@dataclass
class FakeEmbeddingsAPI:
    """What the local server answers and what it was asked."""

    mode: str = "ok"  # ok | base64 | wrong_dimension | silent | error
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _vector_for(text: str) -> list[float]:
    """An unnormalised vector pointing at the number that ends `text` ("... item 7" -> axis 7)."""
    match = re.search(r"(\d+)$", text)
    assert match is not None, text
    vector = [0.0] * DIMENSIONS
    vector[int(match.group(1))] = 3.0
    vector[0] += 4.0  # length 5 before normalisation
    return vector


def _handler(api: FakeEmbeddingsAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            api.requests.append({"path": self.path, "body": body})
            if self.path != "/v1/embeddings":
                self._send(404, {"error": {"message": "not found"}})
            elif api.mode == "silent":
                api.release.wait(timeout=10)  # the client gives up first; the test releases us
            elif api.mode == "error":
                # retry-after-ms keeps the client's retries fast without changing how many it makes.
                self._send(500, {"error": {"message": "boom", "type": "server_error"}}, {"retry-after-ms": "10"})
            else:
                texts = body["input"]
                size = 3 if api.mode == "wrong_dimension" else DIMENSIONS
                vectors = [_vector_for(text)[:size] for text in texts]
                data = [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": (
                            base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
                            if api.mode == "base64"
                            else vector
                        ),
                    }
                    for i, vector in enumerate(vectors)
                ]
                # In reverse, so that only the `index` field gives the order back.
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": list(reversed(data)),
                        "model": body["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

    return Handler


@pytest.fixture
def embeddings_api() -> Iterator[tuple[FakeEmbeddingsAPI, int]]:
    api = FakeEmbeddingsAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield api, server.server_address[1]
    api.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def openai_backend(embeddings_api: tuple[FakeEmbeddingsAPI, int]) -> Iterator[FakeEmbeddingsAPI]:
    """The service configured for the local server; afterwards the local model is back in place."""
    api, port = embeddings_api
    with override_settings(
        EMBEDDING_BACKEND="openai",
        EMBEDDING_API_BASE_URL=f"http://127.0.0.1:{port}/v1",
        EMBEDDING_MODEL="test-embed",
        EMBEDDING_API_KEY="test-key",
        EMBEDDING_TIMEOUT_SECONDS=5.0,
        EMBEDDING_MAX_RETRIES=0,
    ):
        yield api
    _get_backend()  # the settings are restored: this reloads the local model for the tests that follow
    assert embedding_model_name() == settings.EMBEDDING_MODEL != "test-embed"


def _texts(*numbers: int) -> list[str]:
    # Unique per test: the service caches vectors by (model, text) for the life of the process.
    run = uuid.uuid4().hex[:8]
    return [f"recipe {run} item {n}" for n in numbers]


def test_the_openai_backend_returns_normalised_vectors_in_input_order(openai_backend: FakeEmbeddingsAPI) -> None:
    texts = _texts(5, 1, 9)

    batch = embeddings_create(texts=texts)

    assert batch.model == "test-embed"
    assert batch.vectors.shape == (3, DIMENSIONS)
    assert np.linalg.norm(batch.vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    for vector, axis in zip(batch.vectors, (5, 1, 9), strict=True):
        assert vector[axis] == pytest.approx(0.6)
        assert vector[0] == pytest.approx(0.8)
    assert [(r["body"]["model"], r["body"]["input"]) for r in openai_backend.requests] == [("test-embed", texts)]


def test_the_openai_backend_reads_base64_vectors_as_the_openai_api_sends_them(
    openai_backend: FakeEmbeddingsAPI,
) -> None:
    openai_backend.mode = "base64"
    texts = _texts(4, 2)

    batch = embeddings_create(texts=texts)

    assert openai_backend.requests[0]["body"]["encoding_format"] == "base64"
    assert [int(np.argmax(v[1:])) + 1 for v in batch.vectors] == [4, 2]
    assert np.linalg.norm(batch.vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)


@override_settings(EMBEDDING_BATCH_SIZE=2)
def test_the_openai_backend_sends_batches_and_keeps_the_order_across_them(
    openai_backend: FakeEmbeddingsAPI,
) -> None:
    texts = _texts(7, 3, 11, 2, 5)

    batch = embeddings_create(texts=texts)

    assert [int(np.argmax(v[1:])) + 1 for v in batch.vectors] == [7, 3, 11, 2, 5]
    assert [r["body"]["input"] for r in openai_backend.requests] == [texts[0:2], texts[2:4], texts[4:5]]


def test_the_openai_backend_refuses_vectors_of_the_wrong_size(openai_backend: FakeEmbeddingsAPI) -> None:
    openai_backend.mode = "wrong_dimension"

    with pytest.raises(EmbeddingError) as excinfo:
        embeddings_create(texts=_texts(1, 2))

    assert str(excinfo.value) == (
        f"Model 'test-embed' returned vectors of size 3, but EMBEDDING_DIMENSIONS is {DIMENSIONS}"
    )


@override_settings(EMBEDDING_TIMEOUT_SECONDS=0.5, EMBEDDING_MAX_RETRIES=0)
def test_the_openai_backend_gives_up_on_a_server_that_never_answers(openai_backend: FakeEmbeddingsAPI) -> None:
    openai_backend.mode = "silent"
    started = time.monotonic()

    with pytest.raises(EmbeddingError, match=r"^Embedding API call failed: Request timed out"):
        embeddings_create(texts=_texts(1))

    assert time.monotonic() - started < 2.0
    assert len(openai_backend.requests) == 1


@pytest.mark.parametrize("retries", [0, 2])
def test_the_openai_backend_retries_a_server_error_at_most_max_retries_times(
    openai_backend: FakeEmbeddingsAPI, retries: int
) -> None:
    openai_backend.mode = "error"

    with override_settings(EMBEDDING_MAX_RETRIES=retries), pytest.raises(EmbeddingError) as excinfo:
        embeddings_create(texts=_texts(1))

    assert len(openai_backend.requests) == 1 + retries
    assert str(excinfo.value).startswith("Embedding API call failed: ")
    assert "boom" in str(excinfo.value)
