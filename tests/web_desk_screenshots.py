"""Screenshots of the centre's desk at 1280 px in both languages for docs/webapp.md
(``make screenshots``): a fresh demo server, a request asked for the demo elder, one dispatched
and served, Chromium."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.test_web_volunteer import PASSWORDS, Api, dispatched_request
from tests.web_browser import launch_chromium, login, start_demo_server
from tests.web_screenshots import OUT, shoot

LONG = ("desk-assign", "desk-people")  # the demo's 300 members: the first screen only

DESKTOP = {"width": 1280, "height": 800}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        for server in start_demo_server(Path(data), entries=300):
            served = dispatched_request(server, hours_ago=5)
            admin, volunteer = Api(server, "centre-admin"), Api(server, "volunteer")
            elder_id = Api(server, "elder").get("/v1/me")["member"]["id"]
            now = datetime.now(UTC).replace(microsecond=0)
            volunteer.post(
                "/v1/records",
                {
                    "elder_id": elder_id,
                    "service_code": "company",
                    "check_in": (now - timedelta(hours=4)).isoformat(),
                    "check_out": (now - timedelta(hours=3)).isoformat(),
                    "request_id": served,
                },
                status=201,
            )
            asked = admin.post(
                "/v1/requests",
                {
                    "elder_id": elder_id,
                    "service_code": "company",
                    "window_start": (now + timedelta(days=1)).isoformat(),
                    "window_end": (now + timedelta(days=1, hours=2)).isoformat(),
                    "minutes": 60,
                    "notes": "湖南路12号",
                },
                status=201,
            )
            for browser in launch_chromium():
                for lang in ("zh-CN", "en"):
                    context = browser.new_context(
                        viewport=DESKTOP, locale=lang, base_url=server.url
                    )
                    context.add_cookies([{"name": "tb_lang", "value": lang, "url": server.url}])
                    page = context.new_page()
                    login(page, "centre-staff", PASSWORDS["centre-staff"])
                    shoot(page, "desk", lang)
                    for path, name in (
                        ("/desk/dispatch", "desk-dispatch"),
                        (f"/desk/dispatch/{asked['id']}", "desk-assign"),
                        ("/desk/records", "desk-records"),
                        ("/desk/people", "desk-people"),
                        (f"/desk/people/{elder_id}", "desk-person"),
                        (f"/desk/requests/{served}/slip", "desk-slip"),
                        (f"/desk/people/{elder_id}/statement", "desk-statement"),
                    ):
                        page.goto(path)
                        if name in LONG:
                            page.wait_for_load_state("networkidle")
                            page.screenshot(path=str(OUT / f"{name}-{lang}.png"))
                        else:
                            shoot(page, name, lang)
                    context.close()


if __name__ == "__main__":
    main()
