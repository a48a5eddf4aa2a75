"""``oneplan serve`` with a delivery hanging at its receiver: SIGTERM still stops it promptly,
the delivery is not lost, and the next start sends it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.alerts.receivers import HttpReceiver, wait_for
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess


def test_a_hanging_delivery_neither_blocks_shutdown_nor_is_lost(tmp_path: Path, upstream: FakeUpstream) -> None:
    with HttpReceiver() as hook:
        hook.hold.set()
        extra = f"""
[alerts]
thresholds = [100]
forecast_minutes = 0
poll_seconds = 0.05
timeout_seconds = 60
lease_seconds = 1

[alerts.channels.hook]
kind = "webhook"
url = "{hook.url}/alerts"

[alerts.plans.pro]
channels = ["hook"]
"""
        config = tmp_path / "oneplan.toml"
        config.write_text(catalog_for(upstream, plan="[plans.pro]\nrequests_per_5h = 2", extra=extra))
        server = ServeProcess(config, tmp_path / "data").start()
        try:
            key = server.cli("users", "create", "alice", "--plan", "pro").stdout.strip()
            for _ in range(2):
                reply = httpx.post(f"{server.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                   json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
                assert reply.status_code == 200
            wait_for(lambda: hook.requests, what="the delivery, held at the receiver")
            t0 = time.monotonic()
            assert server.terminate() == 0
            stopped_in = time.monotonic() - t0
            pending = server.cli("alerts", "status")
            assert "1 pending, 0 failed, 0 sent" in pending.stdout
            hook.hold.clear()
            server = ServeProcess(config, tmp_path / "data").start()
            wait_for(lambda: "0 pending, 0 failed, 1 sent" in server.cli("alerts", "status").stdout,
                     timeout=30, what="the next start to send it")
        finally:
            server.stop()
    print(f"stopped in {stopped_in:.2f} s with a delivery hanging")
    assert stopped_in < 15  # not the 60 s the hanging attempt may take
    keys = {r.headers["Idempotency-Key"] for r in hook.requests}
    assert len(keys) == 1 and len(hook.requests) == 2  # the same delivery, sent again
