"""A real local HTTP server that receives webhooks as a customer's endpoint would: it verifies each delivery's
signature with the shared secret (answering 401 when it does not match) and records what it received. Its
answers can be scripted (a status code per request, or a delay) to exercise retries and timeouts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autotagger.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, webhook_signature_valid


@dataclass
class Received:
    path: str
    headers: Message  # looked up case-insensitively, as HTTP names are
    body: bytes
    signature_valid: bool
    answered: int


@dataclass
class WebhookReceiver:
    secret: str
    # Status codes to answer, one per request in order; when they run out, 204 for a valid signature.
    script: list[int] = field(default_factory=list)
    delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/autotagger"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                valid = webhook_signature_valid(
                    secret=receiver.secret,
                    timestamp=self.headers.get(TIMESTAMP_HEADER, ""),
                    body=body,
                    signature=self.headers.get(SIGNATURE_HEADER, ""),
                )
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                status = receiver.script.pop(0) if receiver.script else 204 if valid else 401
                receiver.received.append(
                    Received(
                        path=self.path,
                        headers=self.headers,
                        body=body,
                        signature_valid=valid,
                        answered=status,
                    )
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    # The sender gave up waiting (its timeout): nobody is left to answer.
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
