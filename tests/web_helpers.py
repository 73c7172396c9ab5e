"""Helpers for the web app's tests: the CSRF token a page was rendered with, form posts, and
what a form shown on a page would post."""

from __future__ import annotations

import re
from html.parser import HTMLParser
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


class _Forms(HTMLParser):
    """Each form of a page with what a browser would post from it as the page stands."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._select: tuple[str, list[tuple[str, bool]]] | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        name = found.get("name", "")
        if tag == "form":
            self.forms.append((found.get("action", ""), {}))
        elif not self.forms or (not name and tag != "option"):
            return
        elif tag == "input" and found.get("type") not in ("submit", "button", "reset"):
            if found.get("type") not in ("checkbox", "radio") or "checked" in found:
                self.forms[-1][1][name] = found.get("value", "")
        elif tag == "select":
            self._select = (name, [])
        elif tag == "option" and self._select is not None:
            self._select[1].append((found.get("value", ""), "selected" in found))
        elif tag == "textarea":
            self._textarea = name
            self.forms[-1][1][name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.forms[-1][1][self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            name, options = self._select
            if options:  # an empty select posts nothing
                chosen = [value for value, selected in options if selected] or [options[0][0]]
                self.forms[-1][1][name] = chosen[-1]
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            fields = self.forms[-1][1]
            fields[self._textarea] = fields[self._textarea].removeprefix("\n")  # as HTML does
            self._textarea = None


def shown_forms(page: str, action: str) -> list[dict[str, str]]:
    """What each form posting to ``action`` would send now: every named field's value, boxes
    and radios only when checked, a select's chosen option (the first when none is), the CSRF
    token left out — the values a refused form gives back to the person who typed them."""
    parser = _Forms()
    parser.feed(page)
    return [
        {k: v for k, v in fields.items() if k != "_csrf_token"}
        for posted_to, fields in parser.forms
        if posted_to == action
    ]
