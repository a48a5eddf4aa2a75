"""A local model behind the real gateway, spoken to with the openai SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")


def catalog(path: Path) -> str:
    return f"""
[providers.local]
kind = "local"

[models."tiny-qwen3"]
provider = "local"
path = "{path}"

[plans.default]
requests_per_5h = 1000
models = ["*"]
"""


def test_chat_completions_stream_and_not(tmp_path: Path, checkpoints: dict[str, Any]) -> None:
    from tests.support.gateway import Gateway

    with Gateway(tmp_path, catalog(checkpoints["qwen3"])) as gw:
        client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        whole = client.chat.completions.create(
            model="tiny-qwen3",
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=6,
            temperature=0,
        )
        assert whole.choices[0].finish_reason == "length"
        assert whole.usage is not None and whole.usage.completion_tokens == 6
        assert whole.usage.prompt_tokens > 0

        chunks = list(
            client.chat.completions.create(
                model="tiny-qwen3",
                messages=[{"role": "user", "content": "Hello"}],
                max_tokens=6,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = next(c.usage for c in chunks if c.usage is not None)
        assert usage.completion_tokens == 6 and usage.prompt_tokens == whole.usage.prompt_tokens
        assert text == (whole.choices[0].message.content or "")  # greedy: the same answer

        rows = gw.ledger()
        assert [r["output_tokens"] for r in rows][-2:] == [6, 6]


def test_too_many_tokens_is_a_400(tmp_path: Path, checkpoints: dict[str, Any]) -> None:
    from tests.support.gateway import Gateway

    with Gateway(tmp_path, catalog(checkpoints["qwen3"])) as gw:
        client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        with pytest.raises(openai.BadRequestError, match="context length"):
            client.chat.completions.create(
                model="tiny-qwen3", messages=[{"role": "user", "content": "Hi"}], max_tokens=10**6
            )


def test_a_resent_history_is_billed_as_cached_for_its_user_only(tmp_path: Path, checkpoints: dict[str, Any]) -> None:
    from tests.support.gateway import Gateway

    messages = [{"role": "user", "content": "Review this function for bugs, please. " * 6}]
    with Gateway(tmp_path, catalog(checkpoints["qwen3"])) as gw:
        alice = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        bob = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.create_user("bob", "default"), max_retries=0)

        def ask(client: Any) -> Any:
            reply = client.chat.completions.create(model="tiny-qwen3", messages=messages, max_tokens=3, temperature=0)
            return reply.usage

        first, again, other = ask(alice), ask(alice), ask(bob)
        assert first.prompt_tokens_details.cached_tokens == 0
        # Alice's own prompt was cached: all of it but the last token (whose logits start the answer).
        assert again.prompt_tokens_details.cached_tokens == again.prompt_tokens - 1
        assert other.prompt_tokens_details.cached_tokens == 0  # Bob never reuses Alice's prefix
        rows = gw.ledger()
        assert [r["cached_tokens"] for r in rows][-3:] == [0, again.prompt_tokens - 1, 0]
