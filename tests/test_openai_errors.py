"""Every bad input is a clear OpenAI-shaped error with the right status; nothing reaches the
upstream for a rejected request; a client mistake never becomes a 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway


def post(gw: Gateway, body: bytes | dict, key: str | None = "default", headers: dict | None = None) -> httpx.Response:
    h = dict(headers or {})
    if key is not None:
        h["authorization"] = f"Bearer {gw.key if key == 'default' else key}"
    if isinstance(body, dict):
        return httpx.post(f"{gw.base_url}/v1/chat/completions", json=body, headers=h, timeout=30)
    return httpx.post(f"{gw.base_url}/v1/chat/completions", content=body, headers={**h, "content-type": "application/json"}, timeout=30)


def assert_error(resp: httpx.Response, status: int, type_: str, needle: str) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert needle.lower() in error["message"].lower()


GOOD = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def small_gateway(tmp_path: Path, upstream: FakeUpstream):
    plan = "[plans.pro]\nrequests_per_5h = 100\nmodels = [\"m1\"]\n[plans.other]\nrequests_per_5h = 100\nmodels = [\"m2\"]"
    extra = '[models."m2"]\nprovider = "up"\n[server]\nmax_body_bytes = 4096'
    with Gateway(tmp_path, catalog_for(upstream, plan=plan, extra=extra)) as gw:
        yield gw


@pytest.mark.parametrize(
    ("body", "status", "type_", "needle"),
    [
        (b"{not json", 400, "invalid_request_error", "not valid JSON"),
        (b"", 400, "invalid_request_error", "empty"),
        (b"[1, 2]", 400, "invalid_request_error", "JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error", "model is required"),
        ({"model": "m1"}, 400, "invalid_request_error", "messages"),
        ({"model": "m1", "messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_request_error", "role"),
        ({**GOOD, "max_tokens": -3}, 400, "invalid_request_error", "max_tokens"),
        ({**GOOD, "temperature": "hot"}, 400, "invalid_request_error", "temperature"),
        ({**GOOD, "stream": "yes"}, 400, "invalid_request_error", "stream"),
        ({**GOOD, "n": 3}, 400, "invalid_request_error", "n = 1"),
        ({**GOOD, "tools": [{"type": "function"}]}, 400, "invalid_request_error", "tools[0]"),
        ({**GOOD, "model": "gpt-17"}, 404, "not_found_error", "does not exist"),
        ({**GOOD, "model": "m2"}, 403, "permission_error", "not included in your plan"),
        ({**GOOD, "messages": [{"role": "user", "content": "x" * 5000}]}, 413, "request_too_large", "limit"),
    ],
)
def test_bad_requests(small_gateway: Gateway, upstream: FakeUpstream, body, status, type_, needle) -> None:
    assert_error(post(small_gateway, body), status, type_, needle)
    assert upstream.requests == []
    assert small_gateway.ledger() == []  # a rejected request is not a served request


@pytest.mark.parametrize(
    ("key", "needle"),
    [(None, "No API key"), ("sk-op-not-a-real-key", "Invalid API key")],
)
def test_missing_or_bad_keys(small_gateway: Gateway, upstream: FakeUpstream, key, needle) -> None:
    assert_error(post(small_gateway, GOOD, key=key), 401, "authentication_error", needle)
    assert upstream.requests == []


def test_revoked_and_expired_keys(small_gateway: Gateway, upstream: FakeUpstream) -> None:
    db = small_gateway.state.db
    key_id, key = db.create_key("alice")
    assert post(small_gateway, GOOD, key=key).status_code == 200
    db.revoke_key(key_id)
    small_gateway.run(small_gateway.state.keys.reload())
    assert_error(post(small_gateway, GOOD, key=key), 401, "authentication_error", "revoked")
    _id, expired = db.create_key("alice", expires_at=1.0)
    assert_error(post(small_gateway, GOOD, key=expired), 401, "authentication_error", "expired")
    assert len(upstream.requests) == 1


def test_upstream_failure_is_a_clean_error_and_not_charged(small_gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.fault("400", message="Range of input length should be [1, 129024]")
    resp = post(small_gateway, GOOD)
    assert_error(resp, 400, "invalid_request_error", "Range of input length")
    assert upstream.api_key not in resp.text
    upstream.fault("401", times=10)  # whatever the retry policy, every attempt is refused
    resp = post(small_gateway, GOOD)
    assert resp.status_code == 502  # the provider refused oneplan's credentials, not the caller's
    assert upstream.api_key not in resp.text
    rows = small_gateway.ledger()
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(r["weight"] == 0 and r["cost"] == 0 for r in rows)
    usage = httpx.get(f"{small_gateway.base_url}/v1/usage", headers={"authorization": f"Bearer {small_gateway.key}"}).json()
    windows = {w["window"]: w for w in usage["users"][0]["windows"]}
    assert windows["5h"]["used"] == 0


def test_unknown_route_and_wrong_method_are_openai_errors(small_gateway: Gateway) -> None:
    resp = httpx.get(f"{small_gateway.base_url}/v1/nothing-here")
    assert_error(resp, 404, "not_found_error", "no route")
    resp = httpx.get(f"{small_gateway.base_url}/v1/chat/completions")
    assert resp.status_code == 405 and "error" in resp.json()


def test_admin_endpoints_need_the_admin_key(small_gateway: Gateway) -> None:
    url = f"{small_gateway.base_url}/admin/users"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Bearer {small_gateway.key}"}).status_code == 401
    ok = httpx.get(url, headers={"authorization": f"Bearer {small_gateway.admin_key}"})
    assert ok.status_code == 200 and ok.json()["data"][0]["name"] == "alice"
