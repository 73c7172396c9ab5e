"""Helpers for the web app's tests: the CSRF token a page was rendered with, form posts."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import TestClient

CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf_token(client: TestClient[Any], path: str = "/login") -> str:
    page = client.get(path)
    match = CSRF_INPUT.search(page.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post_form(
    client: TestClient[Any], path: str, data: dict[str, str], page: str = "/login"
) -> Any:
    return client.post(
        path, data={**data, "_csrf_token": csrf_token(client, page)}, follow_redirects=False
    )


def browser_login(client: TestClient[Any], username: str, password: str) -> Any:
    return post_form(client, "/login", {"username": username, "password": password})
