"""A provider that serves the Responses API natively (``dialect = "responses"``): a Responses
client's body goes upstream as sent (model swapped, nothing stored there); other protocols are
translated to it; both metered the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Gateway, FakeUpstream, openai.OpenAI]]:
    with FakeUpstream(dialect="responses") as up:
        catalog = f"""
[providers.native]
kind = "responses-compatible"
base_url = "{up.base_url}"
api_key = "{up.api_key}"
[models."gpt-x"]
provider = "native"
upstream = "gpt-upstream"
[plans.pro]
requests_per_5h = 100
"""
        with Gateway(tmp_path, catalog) as gw:
            yield gw, up, openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)


def test_responses_clients_pass_through(setup) -> None:
    gw, up, client = setup
    up.reply("Native answer.", usage=(8, 3))
    response = client.responses.create(model="gpt-x", input="hi", instructions="Be brief.", store=True)
    assert response.output_text == "Native answer."
    sent = up.requests[-1].json
    assert sent["model"] == "gpt-upstream" and sent["input"] == "hi" and sent["instructions"] == "Be brief."
    assert sent["store"] is False  # storage is oneplan's
    up.reply("Streamed native.")
    with client.responses.stream(model="gpt-x", input="again", previous_response_id=response.id) as stream:
        assert stream.get_final_response().output_text == "Streamed native."
    sent = up.requests[-1].json
    assert "previous_response_id" not in sent  # the history went up instead, translated
    assert any("hi" in str(item) for item in sent["input"])
    rows = gw.ledger()
    assert [(r["status"], r["provider"]) for r in rows] == [("ok", "native"), ("ok", "native")]
    assert rows[0]["output_tokens"] == 3


def test_chat_clients_are_translated_to_it(setup) -> None:
    _gw, up, client = setup
    up.reply("From responses.")
    done = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "From responses."
    assert up.requests[-1].path.endswith("/responses")
