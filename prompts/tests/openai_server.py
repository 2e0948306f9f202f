"""A real HTTP server on 127.0.0.1 that speaks OpenAI's chat completions protocol, for tests.

Tests script its replies in order (`reply_json`, `reply_status`, `reply_text`, ...) and read back every
request body it received (`requests`). Nothing in the client under test is patched: it talks HTTP to
this server exactly as it would to a provider.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 0}


@dataclass
class ScriptedReply:
    status: int = 200
    body: Any = None  # JSON-encoded when `text` is None
    text: str | None = None  # sent as is (text/plain unless headers say otherwise)
    delay: float = 0.0  # seconds before answering
    headers: dict[str, str] = field(default_factory=dict)
    logprobs: bool | list[tuple[str, float]] | None = None  # None: when the request asked for them
    respond: Callable[[dict[str, Any]], Any] | None = None  # the content (as JSON) computed from the request


class OpenAIServer:
    """Chat completions at `{url}/chat/completions`; unscripted requests get a 500 saying so."""

    def __init__(self) -> None:
        self._replies: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a test's delayed reply must not hold up the next test
        # shutdown() waits for serve_forever to notice, which it checks every poll_interval (0.5 s by default).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="openai-test-server",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- Scripting --------------------------------------------------------------------------------

    def reply(self, reply: ScriptedReply) -> OpenAIServer:
        with self._lock:
            self._replies.append(reply)
        return self

    def reply_json(
        self,
        obj: Any,
        *,
        logprobs: bool | list[tuple[str, float]] | None = None,
        usage: dict[str, int] | None = None,
        finish_reason: str = "stop",
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> OpenAIServer:
        """A completion whose content is `obj` as JSON. `logprobs`: None = when the request asks for
        them; True = always; a list of (token, logprob) = exactly those."""
        return self.reply_content(
            json.dumps(obj), logprobs=logprobs, usage=usage, finish_reason=finish_reason, delay=delay, headers=headers
        )

    def reply_content(
        self,
        content: str | None,
        *,
        refusal: str | None = None,
        logprobs: bool | list[tuple[str, float]] | None = None,
        usage: dict[str, int] | None = None,
        finish_reason: str = "stop",
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> OpenAIServer:
        body = {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage({**DEFAULT_USAGE, **(usage or {})}),
        }
        return self.reply(ScriptedReply(body=body, delay=delay, headers=dict(headers or {}), logprobs=logprobs))

    def reply_computed(self, respond: Callable[[dict[str, Any]], Any], *, times: int = 1) -> OpenAIServer:
        """`times` completions whose content is `respond(request body)` as JSON: a model that reads the
        question (say, picks among the slugs the request offers)."""
        for _ in range(times):
            self.reply_content("{}", logprobs=False)
            with self._lock:
                self._replies[-1].respond = respond
        return self

    def reply_text(self, text: str, **kwargs: Any) -> OpenAIServer:
        """A completion whose content is `text` (e.g. "not json")."""
        return self.reply_content(text, **kwargs)

    def reply_empty(self, **kwargs: Any) -> OpenAIServer:
        return self.reply_content("", **kwargs)

    def reply_refusal(self, refusal: str = "I can't help with that.", **kwargs: Any) -> OpenAIServer:
        return self.reply_content(None, refusal=refusal, **kwargs)

    def reply_status(
        self, status: int, message: str | None = None, *, headers: dict[str, str] | None = None, delay: float = 0.0
    ) -> OpenAIServer:
        """An OpenAI-style error: {"error": {"message", "type", "code"}}."""
        kind = "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
        error = {
            "message": message or f"Scripted error {status}",
            "type": kind,
            "param": None,
            "code": None,
        }
        return self.reply(ScriptedReply(status=status, body={"error": error}, headers=dict(headers or {}), delay=delay))

    def reply_raw(
        self, text: str, *, status: int = 200, content_type: str = "text/plain", delay: float = 0.0
    ) -> OpenAIServer:
        """A response body that is not a chat completion at all (a proxy's error page, say)."""
        return self.reply(ScriptedReply(status=status, text=text, headers={"Content-Type": content_type}, delay=delay))

    def reply_delay(self, seconds: float, obj: Any = None, **kwargs: Any) -> OpenAIServer:
        """A valid JSON reply (`obj`, default {}) sent only after `seconds`."""
        return self.reply_json({} if obj is None else obj, delay=seconds, **kwargs)

    @property
    def pending(self) -> int:
        """Scripted replies not yet served."""
        with self._lock:
            return len(self._replies)

    # --- Serving ----------------------------------------------------------------------------------

    def _next_reply(self) -> ScriptedReply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        return ScriptedReply(status=500, body={"error": {"message": "openai_server: no scripted reply left"}})

    def _completion(self, reply: ScriptedReply, request: dict[str, Any]) -> Any:
        if reply.status != 200 or not isinstance(reply.body, dict) or reply.body.get("object") != "chat.completion":
            return reply.body
        body = json.loads(json.dumps(reply.body))
        if reply.respond is not None:
            body["choices"][0]["message"]["content"] = json.dumps(reply.respond(request))
        body.update(id=f"chatcmpl-test-{next(self._ids)}", created=int(time.time()), model=request.get("model", ""))
        wanted = reply.logprobs if reply.logprobs is not None else bool(request.get("logprobs"))
        if wanted:
            content = body["choices"][0]["message"]["content"] or ""
            tokens = wanted if isinstance(wanted, list) else _pseudo_logprobs(content)
            body["choices"][0]["logprobs"] = {
                "content": [
                    {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}
                    for token, logprob in tokens
                ],
                "refusal": None,
            }
        return body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, json.dumps({"error": {"message": f"No route {self.path}"}}).encode(), {})
                    return
                request = json.loads(raw or b"{}")
                with server._lock:
                    server.requests.append(request)
                    server.request_headers.append({key.lower(): value for key, value in self.headers.items()})
                reply = server._next_reply()
                if reply.delay and server._stopping.wait(reply.delay):
                    self.close_connection = True
                    return
                if reply.text is not None:
                    payload = reply.text.encode()
                    headers = {"Content-Type": "text/plain", **reply.headers}
                else:
                    payload = json.dumps(server._completion(reply, request)).encode()
                    headers = {"Content-Type": "application/json", **reply.headers}
                self._send(reply.status, payload, headers)

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (its timeout): that is what a delayed reply tests.
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler


def _usage(usage: dict[str, int]) -> dict[str, Any]:
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        "prompt_tokens_details": {"cached_tokens": usage["cached_tokens"]},
    }


def _pseudo_logprobs(content: str) -> list[tuple[str, float]]:
    """Split the content into word/space/punctuation tokens with fixed, distinct logprobs."""
    tokens = re.findall(r"\w+|\s+|[^\w\s]", content)
    return [(token, -0.01 * (index % 7)) for index, token in enumerate(tokens)]
