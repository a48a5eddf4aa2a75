"""Alerts and weekly insights in the console, in a real browser against a real ``oneplan serve``:
a developer sees the alert their own requests fired crossing 80 % of a window, changes a
threshold through the form (saved, as ``GET /v1/alerts`` shows), and sees last week's digest;
the operator sees the delivery that keeps failing, and the team digest."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from oneplan.metering.ledger import LEDGER_DEFAULTS
from oneplan.store.db import Database
from tests.conftest import catalog_for
from tests.console.browser import chromium, console_errors, phone, require_chromium, scheme, wait_for
from tests.console.support import banner_admin_key
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess

PLANS = """
[plans.pro]
requests_per_5h = 10
requests_per_week = 1000

[routing]
retries = 0
"""
ALERTS = """
[alerts]
forecast_minutes = 0
poll_seconds = 0.05
retry_base_seconds = 0.05
max_attempts = 3
timeout_seconds = 2

[alerts.channels.ops-hook]
kind = "webhook"
url = "http://127.0.0.1:1/alerts"

[alerts.plans.pro]
channels = ["ops-hook"]
"""


def seed_last_week(data_dir: Path, user_id: int, start: float) -> None:
    """A week of rows in the ledger (as the gateway writes them) for the digest to show."""
    rng = random.Random(7)
    rows = []
    for i in range(60):
        model = "m1" if i % 4 else "m2"
        refused = i % 15 == 0
        inp = 0 if refused else rng.randint(500, 4000)
        rows.append({
            **LEDGER_DEFAULTS, "id": f"seed-{i}", "ts": start + rng.uniform(9, 18) * 3600 + (i % 5) * 86400,
            "user_id": user_id, "key_id": "key_seed", "protocol": "openai_chat", "model": model, "stream": False,
            "status": "refused" if refused else "ok", "http_status": 429 if refused else 200,
            "error_class": "QuotaExceeded:5h" if refused else None, "weight": 0 if refused else 1,
            "input_tokens": inp, "cached_tokens": inp // 3, "output_tokens": 0 if refused else rng.randint(50, 600),
            "cost": 0.0 if refused else 0.002, "latency_ms": 900.0,
            "ttft_ms": None if refused else (rng.uniform(150, 250) if model == "m2" else rng.uniform(500, 700)),
        })
    db = Database.open(data_dir)
    try:
        db.insert_ledger(rows)
    finally:
        db.close()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str, Path]]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("console-alerts")
    with FakeUpstream(dialect="openai") as up:
        config = tmp / "oneplan.toml"
        config.write_text(catalog_for(up, plan=PLANS, extra=ALERTS))
        server = ServeProcess(config, tmp / "data").start()
        try:
            yield server, banner_admin_key(server), tmp
        finally:
            server.stop()


def sign_in(driver: Any, url: str, key: str) -> None:
    driver.get(f"{url}/console")
    wait_for(lambda: driver.current_url.endswith("/console/sign-in"), what="the sign-in page")
    driver.find_element("id", "key").send_keys(key)
    driver.find_element("id", "sign-in").click()
    wait_for(lambda: driver.find_element("css selector", "body[data-loaded='1']"), what="the console to load")


def section_shots(driver: Any, directory: Path, name: str, section: str) -> None:
    """One section in light and dark, at laptop and phone width."""
    import os
    import shutil

    directory.mkdir(parents=True, exist_ok=True)
    for dark in (False, True):
        scheme(driver, dark)
        for on_phone in (False, True):
            phone(driver, on_phone)
            node = driver.find_element("id", section)
            driver.execute_script("arguments[0].scrollIntoView()", node)
            wait_for(lambda node=node: node.size["width"] <= driver.execute_script("return document.documentElement.clientWidth"),
                     what="the section to fit the viewport")
            path = directory / f"{name}-{'dark' if dark else 'light'}-{'phone' if on_phone else 'laptop'}.png"
            path.write_bytes(node.screenshot_as_png)
            if os.environ.get("ONEPLAN_SCREENSHOTS"):
                Path(os.environ["ONEPLAN_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, Path(os.environ["ONEPLAN_SCREENSHOTS"]) / path.name)
    scheme(driver, False)
    phone(driver, False)


def test_alerts_and_insights_in_the_console(serve: tuple[ServeProcess, str, Path]) -> None:
    server, admin_key, tmp = serve
    url, shots = server.url, tmp / "screenshots"
    done = server.cli("users", "create", "dev", "--plan", "pro")
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    auth = {"authorization": f"Bearer {key}"}
    start = httpx.get(f"{url}/v1/insights", headers=auth).json()["figures"]["week_start"]
    db = Database.open(tmp / "data")
    try:
        dev_id = db.get_user("dev").id
    finally:
        db.close()
    seed_last_week(tmp / "data", dev_id, start)

    # Real requests cross 80 % of the 5-hour window (8 of 10): one alert.
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    for i in range(8):
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"q{i}"}])
    wait_for(lambda: httpx.get(f"{url}/v1/alerts", headers=auth).json()["events"], what="the 80 % alert")

    driver = chromium()
    try:
        sign_in(driver, url, key)
        rows = driver.find_elements("css selector", "#alert-table tbody tr")
        assert len(rows) == 1
        row = rows[0]
        assert row.find_element("css selector", "td[data-window]").get_attribute("data-window") == "5h"
        assert row.find_element("css selector", "td[data-used]").text == "8 / 10"
        assert "dev" in row.find_element("css selector", "td[data-alert]").text
        # The digest of last week: the figures from the seeded rows, and a suggestion.
        digest = driver.find_element("id", "insights-body")
        assert digest.find_element("css selector", "td[data-this]").text == "56"  # 60 rows, 4 refused
        assert driver.find_elements("css selector", "#insights-suggestions li")
        section_shots(driver, shots, "developer-alerts", "alerts")
        section_shots(driver, shots, "developer-insights", "insights")

        # Change the thresholds through the form: saved, as the API shows.
        box = driver.find_element("id", "alert-thresholds")
        box.clear()
        box.send_keys("50, 95")
        driver.find_element("id", "alert-digest").click()
        driver.find_element("id", "save-alerts").click()
        wait_for(lambda: driver.find_element("id", "alert-form-status").text == "Saved.", what="the settings saved")
        settings = httpx.get(f"{url}/v1/alerts", headers=auth).json()["settings"]
        assert settings["thresholds"] == [50, 95] and settings["digest"] is True
        assert console_errors(driver) == []
        # A wrong value is refused with the server's reason, and nothing changes.
        box.clear()
        box.send_keys("-3")
        driver.find_element("id", "save-alerts").click()
        wait_for(lambda: "thresholds" in driver.find_element("css selector", "#alert-form-status.error").text,
                 what="the refusal")
        assert httpx.get(f"{url}/v1/alerts", headers=auth).json()["settings"]["thresholds"] == [50, 95]
        assert all("/v1/alerts" in e and "400" in e for e in console_errors(driver))  # that refusal only
        driver.find_element("id", "sign-out").click()
        wait_for(lambda: driver.current_url.endswith("/console/sign-in"))

        # The operator: the delivery to the dead webhook failed for good, and shows so.
        admin = {"authorization": f"Bearer {admin_key}"}
        wait_for(lambda: httpx.get(f"{url}/admin/alerts", headers=admin).json()["counts"]["failed"], timeout=30,
                 what="the delivery to fail for good")
        sign_in(driver, url, admin_key)
        failed = driver.find_element("css selector", "#delivery-table tbody tr")
        assert failed.find_element("css selector", "td[data-state]").get_attribute("data-state") == "failed"
        assert failed.find_element("css selector", "td[data-attempts]").get_attribute("data-attempts") == "3"
        assert failed.find_element("css selector", "td[data-channel]").text == "ops-hook"
        assert failed.find_element("css selector", "td[data-error]").text
        assert driver.find_element("css selector", "#delivery-counts [data-state='failed']").get_attribute("data-count") == "1"
        assert driver.find_element("css selector", "#insights-body td[data-this]").text == "56"  # last week: only the seeded rows
        section_shots(driver, shots, "admin-alerts", "alerts")
        assert console_errors(driver) == []
    finally:
        driver.quit()
