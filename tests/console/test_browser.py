"""The console in a real browser against a real ``oneplan serve`` whose ledger was filled by real
requests through a fake upstream."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import catalog_for
from tests.console.browser import (
    chromium,
    console_errors,
    phone,
    require_chromium,
    scheme,
    screenshot,
    wait_for,
)
from tests.console.support import banner_admin_key
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess

PLANS = """
[plans.pro]
requests_per_5h = 100
requests_per_week = 1000

[plans.max]
requests_per_5h = 500
tokens_per_month = 2000000

[routing]
retries = 0
circuit_failures = 1000
"""
ADMIN_PATHS = ["/admin/overview", "/admin/series", "/admin/breakdown", "/admin/errors", "/admin/health",
               "/admin/ledger", "/admin/ledger.csv", "/admin/users", "/admin/keys", "/admin/usage", "/admin/providers"]


class Site:
    def __init__(self, server: ServeProcess, up: FakeUpstream, admin_key: str, shots: Path) -> None:
        self.server, self.up, self.admin_key, self.shots = server, up, admin_key, shots
        self.url = server.url

    def user(self, name: str, plan: str) -> str:
        done = self.server.cli("users", "create", name, "--plan", plan)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def usage(self, name: str) -> dict[str, Any]:
        done = self.server.cli("usage", "--user", name, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["users"][0]

    def traffic(self, key: str, ok: int, failed: int) -> None:
        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)
        for i in range(ok):
            if i % 2:
                list(client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"q{i}"}], stream=True))
            else:
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"q{i}"}])
        self.up.fault("500", times=failed)
        for i in range(failed):
            with pytest.raises(openai.APIError):
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"f{i}"}])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("console")
    with FakeUpstream(dialect="openai") as up:
        config = tmp / "oneplan.toml"
        config.write_text(catalog_for(up, plan=PLANS))
        server = ServeProcess(config, tmp / "data").start()
        try:
            yield Site(server, up, banner_admin_key(server), tmp / "screenshots")
        finally:
            server.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver: Any, site: Site, key: str) -> None:
    driver.get(f"{site.url}/console")
    wait_for(lambda: driver.current_url.endswith("/console/sign-in"), what="the sign-in page")
    driver.find_element("id", "key").send_keys(key)
    driver.find_element("id", "sign-in").click()
    wait_for(lambda: driver.find_element("css selector", "body[data-loaded='1']"), what="the console to load")


def shots(driver: Any, site: Site, name: str) -> None:
    """Light and dark, laptop and phone width."""
    for dark in (False, True):
        scheme(driver, dark)
        for on_phone in (False, True):
            phone(driver, on_phone)
            want = "dark" if dark else "light"
            wait_for(lambda want=want: driver.execute_script(SETTLED, want), what="the chart to follow")
            screenshot(driver, site.shots, f"{name}-{'dark' if dark else 'light'}-{'phone' if on_phone else 'laptop'}")
    scheme(driver, False)
    phone(driver, False)


# The chart fits the viewport and was drawn in the current colour scheme (or there is none).
SETTLED = """
var c = document.querySelector('.chart');
if (!c || !c.querySelector('.uplot')) return true;
return c.getAttribute('data-scheme') === arguments[0]
    && c.querySelector('.uplot').getBoundingClientRect().width <= document.documentElement.clientWidth;
"""


def fetch_status(driver: Any, path: str, method: str = "GET") -> int:
    return int(driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: arguments[1], credentials: 'same-origin'}).then(r => done(r.status), e => done(0));",
        path, method,
    ))


def test_developer_sees_the_ledger_manages_keys_and_nothing_else(site: Site, browser: Any) -> None:
    key = site.user("alice", "pro")
    site.traffic(key, ok=7, failed=2)
    sign_in(browser, site, key)
    usage = site.usage("alice")

    # The page's figures are the ledger's.
    cards = {c.get_attribute("data-window"): c for c in browser.find_elements("css selector", "#window-cards .window")}
    assert set(cards) == {w["window"] for w in usage["windows"]}
    for w in usage["windows"]:
        assert float(cards[w["window"]].get_attribute("data-used")) == w["used"]
        assert float(cards[w["window"]].get_attribute("data-limit")) == w["limit"]
        assert "Frees up at" in cards[w["window"]].text
    cell = lambda name: browser.find_element("css selector", f"#model-table td[data-{name}]").get_attribute(f"data-{name}")  # noqa: E731
    model = usage["models"][0]
    assert (cell("model"), int(cell("requests")), int(cell("input")), int(cell("output"))) == (
        model["model"], model["requests"], model["input_tokens"], model["output_tokens"])
    assert float(cell("cost")) == pytest.approx(model["cost"])
    rows = browser.find_elements("css selector", "#request-table tbody tr")
    assert len(rows) == 9 and "q0" not in browser.page_source  # no prompt text
    assert browser.find_element("css selector", "#chart canvas")  # the chart library drew
    perf = browser.execute_script(
        "var n = performance.getEntriesByType('navigation')[0], p = performance.getEntriesByName('first-contentful-paint')[0];"
        "var bytes = n.transferSize + performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, 0);"
        "return {fcp: p ? p.startTime : null, bytes: bytes, decoded: n.decodedBodySize + performance.getEntriesByType('resource').reduce((s, r) => s + r.decodedBodySize, 0)};"
    )
    for directory in (site.shots, Path(os.environ.get("ONEPLAN_SCREENSHOTS") or site.shots)):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "perf-developer.json").write_text(json.dumps(perf))
    shots(browser, site, "developer")
    assert console_errors(browser) == []

    # Create a key (shown once), use it with the openai SDK, revoke it, see it refused.
    browser.find_element("id", "key-name").send_keys("ci-laptop")
    browser.find_element("id", "create-key").click()
    new_key = wait_for(lambda: browser.find_element("id", "new-key-value").text, what="the new key")
    client = openai.OpenAI(base_url=f"{site.url}/v1", api_key=new_key, max_retries=0)
    assert client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}]).choices
    row = wait_for(lambda: next(r for r in browser.find_elements("css selector", "#key-table tbody tr") if "ci-laptop" in r.text),
                   what="the new key's row")
    row.find_element("css selector", "button.danger").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: "revoked" in next(r for r in browser.find_elements("css selector", "#key-table tbody tr") if "ci-laptop" in r.text).text,
             what="the key shown revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])

    # No admin page or endpoint for a developer's session.
    for path in ADMIN_PATHS:
        assert fetch_status(browser, path) == 403, path
    assert fetch_status(browser, "/admin/users/alice", "PATCH") == 403
    browser.get(f"{site.url}/console/admin")
    assert browser.find_element("id", "forbidden").text
    screenshot(browser, site.shots, "forbidden-light-laptop")

    # Sign-out ends the session on the server, not only in this browser.
    browser.get(f"{site.url}/console")
    wait_for(lambda: browser.find_element("css selector", "body[data-loaded='1']"))
    token = browser.get_cookie("oneplan_session")["value"]
    browser.find_element("id", "sign-out").click()
    wait_for(lambda: browser.current_url.endswith("/console/sign-in"), what="the sign-in page")
    assert httpx.get(f"{site.url}/v1/me", cookies={"oneplan_session": token}).status_code == 401
    browser.get(f"{site.url}/console")
    assert browser.current_url.endswith("/console/sign-in")
    screenshot(browser, site.shots, "sign-in-light-laptop")


class Evil(BaseHTTPRequestHandler):
    """Another site (another port is another origin) with forms that post to the console."""

    target = ""

    def do_GET(self) -> None:
        page = f"""<!doctype html><form id=f method=post action="{self.target}/v1/me/keys" enctype="text/plain">
<input name='{{"name":"forged","x":"' value='"}}'></form>
<form id=g method=post action="{self.target}/console/sign-out"></form>
<script>document.getElementById({'"f"' if self.path == "/keys" else '"g"'}).submit()</script>"""
        body = page.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_forged_cross_site_posts_are_refused(site: Site, browser: Any) -> None:
    key = site.user("mallory-target", "pro")
    sign_in(browser, site, key)
    Evil.target = site.url
    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        for path in ("/keys", "/sign-out"):
            browser.get(f"http://127.0.0.1:{evil.server_address[1]}{path}")
            wait_for(lambda: browser.current_url.startswith(site.url), what="the forged post")
            assert "refused" in browser.page_source.lower() or "403" in browser.page_source
    finally:
        evil.shutdown()
    keys = httpx.get(f"{site.url}/v1/me/keys", headers={"authorization": f"Bearer {key}"}).json()["data"]
    assert [k["name"] for k in keys] == [None]  # no forged key
    browser.get(f"{site.url}/console")  # and the session survived the forged sign-out
    wait_for(lambda: browser.find_element("css selector", "body[data-loaded='1']"), what="the console")


def test_operator_changes_a_plan_and_the_user_sees_the_new_limits(site: Site, browser: Any) -> None:
    key = site.user("bob", "pro")
    site.traffic(key, ok=3, failed=1)
    sign_in(browser, site, site.admin_key)
    assert browser.find_element("css selector", "body[data-page='admin']")
    wait_for(lambda: browser.find_elements("css selector", "#ledger-table tbody tr"), what="the ledger explorer")
    shots(browser, site, "admin")
    assert console_errors(browser) == []
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("css selector", "select.plan-select[data-user='bob']")).select_by_value("max")
    wait_for(lambda: site.usage("bob")["plan"] == "max", what="the plan change")
    browser.find_element("id", "sign-out").click()
    wait_for(lambda: browser.current_url.endswith("/console/sign-in"))
    sign_in(browser, site, key)
    limits = {c.get_attribute("data-window"): float(c.get_attribute("data-limit"))
              for c in browser.find_elements("css selector", "#window-cards .window")}
    assert limits == {"5h": 500.0, "tokens_month": 2000000.0}
    assert {w["window"]: w["limit"] for w in site.usage("bob")["windows"]} == limits
