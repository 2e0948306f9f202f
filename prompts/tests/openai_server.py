"""A real HTTP server on 127.0.0.1 that speaks OpenAI's chat completions protocol, for tests.

Tests script its replies in order (`reply_json`, `reply_status`, `reply_text`, ...) and read back every
request body it received (`requests`). Nothing in the client under test is patched: it talks HTTP to
this server exactly as it would to a provider.

It also keeps the Files and Batches endpoints in memory (upload, create, retrieve, cancel, download): a batch answers
as `script_batch` says (in_progress for some polls, then completed, expired, failed or cancelled, with error
lines or no line for some custom_ids), each answered line's completion made from its request body by the next
scripted reply, as a live request's would be. `batch_lines` reads back what a batch was asked.
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
from email.parser import BytesParser
from email.policy import HTTP
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


@dataclass
class BatchScript:
    """How the next batch created behaves: `in_progress` retrievals answer in_progress, the next ones
    `outcome`; then each request line is answered from the scripted replies, except the custom_ids of
    `errors` (an error line with that HTTP status) and of `missing` (no line at all). A "failed" batch (its
    input refused) answers nothing."""

    in_progress: int = 0
    outcome: str = "completed"
    errors: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)


class OpenAIServer:
    """Chat completions at `{url}/chat/completions`; unscripted requests get a 500 saying so."""

    def __init__(self) -> None:
        self._replies: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.files: dict[str, dict[str, Any]] = {}  # id -> {"content": bytes, "purpose", "filename"}
        self.batches: dict[str, dict[str, Any]] = {}  # id -> the batch object as last served
        self.cancelled: list[str] = []  # batch ids, in the order they were cancelled
        self.batch_retrievals: dict[str, int] = {}
        self._batch_scripts: deque[BatchScript] = deque()
        self._batch_of: dict[str, BatchScript] = {}
        # The statuses of the next file downloads, in order (a 5xx: the download fails); then 200.
        self.download_statuses: deque[int] = deque()
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

    def script_batch(self, script: BatchScript | None = None, **fields: Any) -> OpenAIServer:
        """How the next batch created behaves (BatchScript's fields; default: completed at the first poll)."""
        with self._lock:
            self._batch_scripts.append(script or BatchScript(**fields))
        return self

    def batch_lines(self, batch_id: str) -> list[dict[str, Any]]:
        """The request lines of a batch's input file, as uploaded."""
        with self._lock:
            content = self.files[self.batches[batch_id]["input_file_id"]]["content"]
        return [json.loads(line) for line in content.decode().splitlines() if line.strip()]

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

    # --- Files and batches ------------------------------------------------------------------------

    def _file_upload(self, content_type: str, raw: bytes) -> tuple[int, Any]:
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields: dict[str, Any] = {}
        filename = ""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = payload
            if name == "file":
                filename = str(part.get_filename() or "")
        if "file" not in fields:
            return 400, {"error": {"message": "No file in the upload", "type": "invalid_request_error"}}
        purpose = (fields.get("purpose") or b"").decode()
        with self._lock:
            file_id = f"file-test-{next(self._ids)}"
            self.files[file_id] = {"content": fields["file"], "purpose": purpose, "filename": filename}
        return 200, self._file_object(file_id)

    def _file_object(self, file_id: str) -> dict[str, Any]:
        stored = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(stored["content"]),
            "created_at": int(time.time()),
            "filename": stored["filename"] or "output.jsonl",
            "purpose": stored["purpose"],
            "status": "processed",
        }

    def _batch_create(self, request: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            if request.get("input_file_id") not in self.files:
                return 404, {"error": {"message": "No such file", "type": "invalid_request_error"}}
            batch_id = f"batch-test-{next(self._ids)}"
            self._batch_of[batch_id] = self._batch_scripts.popleft() if self._batch_scripts else BatchScript()
            self.batch_retrievals[batch_id] = 0
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": request.get("endpoint"),
                "input_file_id": request["input_file_id"],
                "completion_window": request.get("completion_window"),
                "status": "validating",
                "created_at": int(time.time()),
                "output_file_id": None,
                "error_file_id": None,
                "errors": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
            }
            return 200, dict(self.batches[batch_id])

    def _batch_retrieve(self, batch_id: str) -> tuple[int, Any]:
        with self._lock:
            if batch_id not in self.batches:
                return 404, {"error": {"message": "No such batch", "type": "invalid_request_error"}}
            self.batch_retrievals[batch_id] += 1
            batch = self.batches[batch_id]
            script = self._batch_of[batch_id]
            finished = batch["status"] in ("completed", "expired", "failed", "cancelled")
            if finished or self.batch_retrievals[batch_id] <= script.in_progress:
                if not finished:
                    batch["status"] = "in_progress"
                return 200, dict(batch)
        lines = self.batch_lines(batch_id)
        if script.outcome == "failed":
            errors = [{"code": "invalid_request", "message": "Scripted: the input was refused", "line": None}]
            with self._lock:
                batch.update(status="failed", errors={"object": "list", "data": errors})
                batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
                return 200, dict(batch)
        output: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for line in lines:
            custom_id = line["custom_id"]
            if custom_id in script.missing:
                continue
            if custom_id in script.errors:
                status = script.errors[custom_id]
                body: Any = {"error": {"message": f"Scripted error {status}", "type": "server_error"}}
            else:
                reply = self._next_reply()
                status, body = reply.status, self._completion(reply, line["body"])
            item = {
                "id": f"batch-req-{next(self._ids)}",
                "custom_id": custom_id,
                "response": {"status_code": status, "request_id": f"req-{next(self._ids)}", "body": body},
                "error": None,
            }
            (output if status == 200 else failures).append(item)
        with self._lock:
            for kind, items in (("output_file_id", output), ("error_file_id", failures)):
                if items:
                    file_id = f"file-test-{next(self._ids)}"
                    content = "".join(json.dumps(item) + "\n" for item in items).encode()
                    self.files[file_id] = {"content": content, "purpose": "batch_output", "filename": ""}
                    batch[kind] = file_id
            batch["status"] = script.outcome
            batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(failures)}
            return 200, dict(batch)

    def _batch_cancel(self, batch_id: str) -> tuple[int, Any]:
        with self._lock:
            if batch_id not in self.batches:
                return 404, {"error": {"message": "No such batch", "type": "invalid_request_error"}}
            batch = self.batches[batch_id]
            if batch["status"] in ("completed", "expired", "failed", "cancelled"):
                return 400, {"error": {"message": f"Batch is {batch['status']}", "type": "invalid_request_error"}}
            # What a provider does: no further request is answered, and the batch ends cancelled.
            batch["status"] = "cancelled"
            self.cancelled.append(batch_id)
            return 200, {**batch, "status": "cancelling"}

    def _file_content(self, file_id: str) -> tuple[int, bytes]:
        with self._lock:
            stored = self.files.get(file_id)
            status = self.download_statuses.popleft() if self.download_statuses else 200
        if status != 200:
            return status, json.dumps({"error": {"message": f"Scripted error {status}"}}).encode()
        if stored is None:
            return 404, json.dumps({"error": {"message": "No such file"}}).encode()
        return 200, bytes(stored["content"])

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                batch = re.fullmatch(r"/v1/batches/([\w-]+)", path)
                content = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
                if batch:
                    status, body = server._batch_retrieve(batch.group(1))
                    self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})
                elif content:
                    status, payload = server._file_content(content.group(1))
                    self._send(status, payload, {"Content-Type": "application/octet-stream"})
                else:
                    self._send(404, json.dumps({"error": {"message": f"No route {self.path}"}}).encode(), {})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0].rstrip("/")
                cancel = re.fullmatch(r"/v1/batches/([\w-]+)/cancel", path)
                if cancel:
                    status, body = server._batch_cancel(cancel.group(1))
                    self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})
                    return
                if path in ("/v1/files", "/v1/batches"):
                    if path == "/v1/files":
                        status, body = server._file_upload(self.headers.get("Content-Type", ""), raw)
                    else:
                        status, body = server._batch_create(json.loads(raw or b"{}"))
                    self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})
                    return
                if path != "/v1/chat/completions":
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
