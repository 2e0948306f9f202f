"""Tokens issued before knox keep working after the upgrade, stored hashed with an expiry, and the table
that held them in plain text is gone."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from knox.models import AuthToken
from rest_framework.test import APIClient

MIGRATION = ("api_tokens", "0001_drf_tokens_hashed_into_knox")
DRF_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"


def test_a_drf_token_is_hashed_into_knox_and_the_plain_text_table_dropped(
    migrator: MigrationExecutor, api_client_user: Any
) -> None:
    migrator.migrate([("api_tokens", None)])
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL, "
            "user_id bigint NOT NULL)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [DRF_KEY, api_client_user.pk])
    migrator.loader.build_graph()

    migrator.migrate([MIGRATION])

    token = AuthToken.objects.get()
    assert (token.user_id, token.token_key) == (api_client_user.pk, DRF_KEY[:15])
    assert token.expiry is not None
    assert DRF_KEY not in token.digest
    assert "authtoken_token" not in connection.introspection.table_names()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {DRF_KEY}")
    assert client.get("/api/v1/categories").status_code == 200
