"""With several workers and prometheus-client's multiprocess mode, ``/metrics`` counts every
worker's requests, whichever worker answers the scrape (``SharedRequests``)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess

REQUESTS = 24


def test_two_workers_scraped_by_either_count_every_request(tmp_path: Path) -> None:
    with FakeUpstream(dialect="openai") as up:
        config = tmp_path / "oneplan.toml"
        prefix = "metrics-" + secrets.token_hex(4)
        config.write_text(catalog_for(up, extra=f'[server]\nredis_url = "redis://127.0.0.1:6379/0"\nredis_prefix = "{prefix}"\n'))
        shared = tmp_path / "prometheus"
        shared.mkdir()
        server = ServeProcess(config, tmp_path / "data", "--workers", "2")
        server.env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
        server.start()
        try:
            created = server.cli("users", "create", "alice", "--plan", "pro")
            assert created.returncode == 0, created.stderr
            auth = {"authorization": f"Bearer {created.stdout.strip()}"}
            for i in range(REQUESTS):
                # A new connection each time (httpx.post): the kernel spreads them over the workers.
                answer = httpx.post(f"{server.url}/v1/chat/completions", headers=auth, timeout=30,
                                    json={"model": "m1", "messages": [{"role": "user", "content": f"q{i}"}]})
                assert answer.status_code == 200, answer.text
            answered_by: set[str] = set()
            for _ in range(40):  # scrapes on new connections, until both workers answered one
                text = httpx.get(f"{server.url}/metrics", timeout=30).text
                answered_by |= set(re.findall(r'^oneplan_open_circuits\{pid="(\d+)"\}', text, re.M))
                found = re.search(r'^oneplan_requests_total\{model="m1",provider="up",status="ok"\} (\S+)$', text, re.M)
                assert found is not None and float(found.group(1)) == REQUESTS
                counted = re.search(r'^oneplan_request_duration_seconds_count\{model="m1",provider="up"\} (\S+)$', text, re.M)
                assert counted is not None and float(counted.group(1)) == REQUESTS
                if len(answered_by) == 2:
                    break
            assert len(answered_by) == 2  # each worker's scrape counted the other's requests too
        finally:
            server.kill()
