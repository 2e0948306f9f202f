"""Outbound webhooks: the one module that sends them.

A delivery is a POST of a JSON body with three headers:

- `X-AutoTagger-Event`: what happened (e.g. `retag_job.finished`);
- `X-AutoTagger-Timestamp`: seconds since the epoch when it was signed;
- `X-AutoTagger-Signature`: `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the shared secret>`.

A receiver recomputes the HMAC over the raw body it received, compares in constant time and refuses a timestamp
too far from its clock (a replayed delivery); `webhook_signature_valid` does exactly that and is what the README
shows. Signing the timestamp with the body stops a captured delivery from being replayed later under a fresh
timestamp.

Each attempt has a timeout (WEBHOOK_TIMEOUT_SECONDS); a 5xx answer or a connection error is retried with
exponential back-off, at most WEBHOOK_MAX_ATTEMPTS attempts in all; any other answer is final (a 4xx will not
change by asking again). The function never raises for the receiver's sake: the outcome is returned for the
caller to record.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

logger = logging.getLogger(__name__)

EVENT_HEADER = "X-AutoTagger-Event"
TIMESTAMP_HEADER = "X-AutoTagger-Timestamp"
SIGNATURE_HEADER = "X-AutoTagger-Signature"
SIGNATURE_PREFIX = "sha256="
# How far a receiver may trust a timestamp from its own clock, by default.
SIGNATURE_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class WebhookDelivery:
    """What happened to one webhook: the receiver's last status code (None when it never answered), the last
    error (empty when delivered), how many attempts were made."""

    url: str
    event: str
    delivered: bool
    status_code: int | None
    error: str
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def webhook_url_problem(url: str) -> str | None:
    """Why a webhook may not be sent to `url`, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"{url!r} is not a URL."
    if parts.scheme not in ("http", "https") or not host:
        return f"{url!r} is not an http(s) URL with a host."
    return None


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """The value of the signature header for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def webhook_signature_valid(
    *,
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_seconds: float = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether a received delivery is genuine: the signature matches the raw body and timestamp under `secret`,
    and the timestamp lies within `tolerance_seconds` of `now` (the receiver's clock)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_seconds:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected.encode(), signature.encode())


def _post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """The receiver's status code; raises OSError (URLError, a timeout) or HTTPException (not HTTP) when it
    could not be reached."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def webhook_send(
    *,
    url: str,
    secret: str,
    event: str,
    payload: dict[str, Any],
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookDelivery:
    """POST `payload` to `url`, signed with `secret`; retried on 5xx and connection errors with back-off, within
    WEBHOOK_MAX_ATTEMPTS attempts of WEBHOOK_TIMEOUT_SECONDS each. Returns the outcome; never raises for a
    receiver that fails."""
    problem = webhook_url_problem(url)
    if problem:
        return WebhookDelivery(url=url, event=event, delivered=False, status_code=None, error=problem, attempts=0)
    if not secret:
        error = "No webhook secret: an unsigned delivery is never sent."
        return WebhookDelivery(url=url, event=event, delivered=False, status_code=None, error=error, attempts=0)
    body = json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True).encode()
    max_attempts = max(1, int(settings.WEBHOOK_MAX_ATTEMPTS))
    timeout = float(settings.WEBHOOK_TIMEOUT_SECONDS)
    status_code: int | None = None
    error = ""
    attempts = 0
    for attempt in range(1, max_attempts + 1):
        attempts = attempt
        # Signed per attempt: a retry a minute later still falls within the receiver's tolerance.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "AutoTagger-Webhook/1",
            EVENT_HEADER: event,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=timestamp, body=body),
        }
        try:
            status_code = _post(url, body=body, headers=headers, timeout=timeout)
        except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
            status_code = None
            reason = getattr(exc, "reason", exc)
            error = f"Unable to reach the receiver: {reason}"
        else:
            if 200 <= status_code < 300:
                return WebhookDelivery(
                    url=url, event=event, delivered=True, status_code=status_code, error="", attempts=attempt
                )
            error = f"The receiver answered {status_code}."
            if status_code < 500:
                break
        if attempt < max_attempts:
            sleep(min(float(settings.WEBHOOK_RETRY_BASE_SECONDS) * 2 ** (attempt - 1), 60.0))
    logger.warning("Webhook %s to %s not delivered after %s attempts: %s", event, url, attempts, error)
    return WebhookDelivery(
        url=url, event=event, delivered=False, status_code=status_code, error=error, attempts=attempts
    )
