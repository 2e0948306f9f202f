"""Webhooks: signed so that a receiver can tell a genuine delivery, retried a bounded number of times, each
attempt within its timeout."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from autotagger.tests.webhook_receiver import WebhookReceiver
from autotagger.webhooks import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    webhook_send,
    webhook_signature,
    webhook_signature_valid,
)

PAYLOAD = {"job": 12, "status": "succeeded", "counts": {"changed": 3, "unchanged": 7}}


def test_the_receiver_verifies_the_signature_of_a_delivery(webhook_receiver: WebhookReceiver, settings: Any) -> None:
    delivery = webhook_send(
        url=webhook_receiver.url, secret=settings.RETAG_WEBHOOK_SECRET, event="retag_job.finished", payload=PAYLOAD
    )

    assert delivery.delivered
    assert (delivery.status_code, delivery.attempts, delivery.error) == (204, 1, "")
    [received] = webhook_receiver.received
    assert received.signature_valid
    assert received.headers[EVENT_HEADER] == "retag_job.finished"
    assert received.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert json.loads(received.body) == PAYLOAD


def test_the_receiver_rejects_a_tampered_body(webhook_receiver: WebhookReceiver, settings: Any) -> None:
    webhook_send(
        url=webhook_receiver.url, secret=settings.RETAG_WEBHOOK_SECRET, event="retag_job.finished", payload=PAYLOAD
    )
    genuine = webhook_receiver.received[0]
    tampered = genuine.body.replace(b'"changed": 3', b'"changed": 9')
    assert tampered != genuine.body
    headers = {name: genuine.headers[name] for name in (EVENT_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)}
    request = urllib.request.Request(webhook_receiver.url, data=tampered, headers=headers, method="POST")

    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as exc:
        status = exc.code
    else:
        status = 200

    assert status == 401
    assert webhook_receiver.received[1].signature_valid is False


def test_a_delivery_signed_with_another_secret_is_refused(webhook_receiver: WebhookReceiver) -> None:
    delivery = webhook_send(url=webhook_receiver.url, secret="not-the-shared-one", event="e", payload=PAYLOAD)

    assert not delivery.delivered
    assert delivery.status_code == 401
    assert delivery.attempts == 1  # a 4xx will not change by asking again


def test_a_signature_outside_the_tolerance_is_not_valid() -> None:
    body = b'{"job": 1}'
    old = str(int(time.time()) - 3600)

    signature = webhook_signature(secret="s", timestamp=old, body=body)

    assert not webhook_signature_valid(secret="s", timestamp=old, body=body, signature=signature)
    assert webhook_signature_valid(secret="s", timestamp=old, body=body, signature=signature, now=int(old) + 10)


def test_a_failing_receiver_is_tried_at_most_the_configured_number_of_times(
    webhook_receiver: WebhookReceiver, settings: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    webhook_receiver.script = [503] * 10

    delivery = webhook_send(url=webhook_receiver.url, secret=settings.RETAG_WEBHOOK_SECRET, event="e", payload=PAYLOAD)

    assert not delivery.delivered
    assert (delivery.status_code, delivery.attempts) == (503, 3)
    assert delivery.error == "The receiver answered 503."
    assert len(webhook_receiver.received) == 3


def test_a_retry_after_a_5xx_delivers(webhook_receiver: WebhookReceiver, settings: Any) -> None:
    webhook_receiver.script = [502]

    delivery = webhook_send(url=webhook_receiver.url, secret=settings.RETAG_WEBHOOK_SECRET, event="e", payload=PAYLOAD)

    assert delivery.delivered
    assert (delivery.status_code, delivery.attempts) == (204, 2)
    assert all(received.signature_valid for received in webhook_receiver.received)


def test_the_back_off_doubles_between_attempts(webhook_receiver: WebhookReceiver, settings: Any) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_RETRY_BASE_SECONDS = 1.5
    webhook_receiver.script = [500] * 4
    waits: list[float] = []

    webhook_send(
        url=webhook_receiver.url, secret=settings.RETAG_WEBHOOK_SECRET, event="e", payload=PAYLOAD, sleep=waits.append
    )

    assert waits == [1.5, 3.0, 6.0]


def test_each_attempt_gives_up_after_the_timeout(webhook_receiver: WebhookReceiver, settings: Any) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    webhook_receiver.delay_seconds = 3.0
    started = time.monotonic()

    delivery = webhook_send(url=webhook_receiver.url, secret=settings.RETAG_WEBHOOK_SECRET, event="e", payload=PAYLOAD)

    assert time.monotonic() - started < 2.0
    assert not delivery.delivered
    assert delivery.status_code is None
    assert delivery.attempts == 2
    assert "timed out" in delivery.error


def test_an_unreachable_receiver_is_reported_after_the_bounded_attempts(settings: Any) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.01
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver = WebhookReceiver(secret="s").start()
    url = receiver.url
    receiver.stop()

    delivery = webhook_send(url=url, secret="s", event="e", payload=PAYLOAD)

    assert not delivery.delivered
    assert delivery.attempts == 2
    assert delivery.error.startswith("Unable to reach the receiver")


def test_a_url_that_is_not_http_is_never_requested() -> None:
    delivery = webhook_send(url="file:///etc/passwd", secret="s", event="e", payload=PAYLOAD)

    assert not delivery.delivered
    assert delivery.attempts == 0
    assert "not an http(s) URL" in delivery.error


def test_nothing_is_sent_without_a_secret(webhook_receiver: WebhookReceiver) -> None:
    delivery = webhook_send(url=webhook_receiver.url, secret="", event="e", payload=PAYLOAD)

    assert not delivery.delivered
    assert delivery.attempts == 0
    assert webhook_receiver.received == []
