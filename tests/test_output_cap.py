"""A model's max_output_tokens caps what clients ask for (Claude Code asks for up to 128k),
whether the request is translated or passed through."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway


@pytest.mark.parametrize(("kind", "dialect", "fake"), [("dashscope", "openai", "dashscope"),
                                                      ("anthropic-compatible", "anthropic", "anthropic")])
def test_requests_are_capped_to_the_models_output_limit(tmp_path: Path, kind: str, dialect: str, fake: str) -> None:
    with FakeUpstream(dialect=fake) as up:
        catalog = f"""
[providers.up]
kind = "{kind}"
dialect = "{dialect}"
base_url = "{up.base_url}"
api_key = "{up.api_key}"
[models."qwen3.5-plus"]
provider = "up"
max_output_tokens = 4096
[plans.pro]
requests_per_5h = 10
"""
        with Gateway(tmp_path, catalog) as gw:
            client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
            with client.messages.stream(  # the SDK insists on streaming for so large a max_tokens
                model="qwen3.5-plus", max_tokens=128000, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                stream.get_final_message()
            assert up.requests[-1].json["max_tokens"] == 4096
            client.messages.create(model="qwen3.5-plus", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
            assert up.requests[-1].json["max_tokens"] == 100
