"""A charset that is no text encoding, with a query string, through the WSGI application that gunicorn serves:
Django would fail while building the request, before any middleware, so the WSGI entry point refuses it."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from autotagger.wsgi import application


@pytest.mark.parametrize("charset", ["bz2_codec", "zlib_codec", "base64_codec"])
def test_a_codec_that_is_no_text_encoding_gets_a_json_415_from_the_api(charset: str) -> None:
    response = Client(application).get(
        "/api/v1/recipes?tag=x", headers={"Content-Type": f"application/json; charset={charset}"}
    )

    assert response.status_code == 415
    assert response.headers["Content-Type"] == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == "unsupported_charset"
    assert charset in error["message"]


def test_a_codec_that_is_no_text_encoding_gets_a_plain_415_on_pages() -> None:
    response = Client(application).post(
        "/accounts/login/?next=/",
        data=b"x",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=bz2_codec"},
    )

    assert response.status_code == 415
    assert response.headers["Content-Type"].startswith("text/plain")
    assert b"bz2_codec" in response.data
