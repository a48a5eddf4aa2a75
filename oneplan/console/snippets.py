"""Copyable setup snippets for the tools developers point at oneplan, filled in with this
server's URL and the caller's models (never a real key)."""

from __future__ import annotations

import json

PLACEHOLDER = "YOUR_ONEPLAN_KEY"


def snippets(base_url: str, models: list[str]) -> list[dict[str, str]]:
    base = base_url.rstrip("/")
    model = models[0] if models else "MODEL"
    opencode = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "oneplan": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "oneplan",
                "options": {"baseURL": f"{base}/v1", "apiKey": "{env:ONEPLAN_API_KEY}"},
                "models": {m: {"name": m} for m in models[:8]} or {model: {"name": model}},
            }
        },
        "model": f"oneplan/{model}",
    }
    return [
        {
            "id": "claude-code", "title": "Claude Code", "lang": "sh",
            "code": f"export ANTHROPIC_BASE_URL={base}\nexport ANTHROPIC_AUTH_TOKEN={PLACEHOLDER}\n"
            f"claude --model {model}",
        },
        {
            "id": "qwen-code", "title": "Qwen Code", "lang": "sh",
            "code": f"export OPENAI_BASE_URL={base}/v1\nexport OPENAI_API_KEY={PLACEHOLDER}\n"
            f"export OPENAI_MODEL={model}\nqwen --auth-type openai",
        },
        {
            "id": "codex", "title": "Codex CLI (~/.codex/config.toml)", "lang": "toml",
            "code": f'model = "{model}"\nmodel_provider = "oneplan"\n\n[model_providers.oneplan]\nname = "oneplan"\n'
            f'base_url = "{base}/v1"\nenv_key = "ONEPLAN_API_KEY"\nwire_api = "responses"\n\n'
            f"# then: export ONEPLAN_API_KEY={PLACEHOLDER}",
        },
        {
            "id": "opencode", "title": "OpenCode (opencode.json)", "lang": "json",
            "code": json.dumps(opencode, indent=2) + f"\n\n# then: export ONEPLAN_API_KEY={PLACEHOLDER}",
        },
        {
            "id": "cline", "title": "Cline", "lang": "text",
            "code": f"API Provider: OpenAI Compatible\nBase URL: {base}/v1\nAPI Key: {PLACEHOLDER}\nModel ID: {model}",
        },
        {
            "id": "openai-sdk", "title": "openai SDK (Python)", "lang": "python",
            "code": f'from openai import OpenAI\n\nclient = OpenAI(base_url="{base}/v1", api_key="{PLACEHOLDER}")\n'
            f'reply = client.chat.completions.create(\n    model="{model}",\n'
            f'    messages=[{{"role": "user", "content": "Hello"}}],\n)\nprint(reply.choices[0].message.content)',
        },
        {
            "id": "anthropic-sdk", "title": "anthropic SDK (Python)", "lang": "python",
            "code": f'from anthropic import Anthropic\n\nclient = Anthropic(base_url="{base}", api_key="{PLACEHOLDER}")\n'
            f'reply = client.messages.create(\n    model="{model}", max_tokens=1024,\n'
            f'    messages=[{{"role": "user", "content": "Hello"}}],\n)\nprint(reply.content[0].text)',
        },
        {
            "id": "curl", "title": "curl", "lang": "sh",
            "code": f"curl {base}/v1/chat/completions \\\n  -H 'Authorization: Bearer {PLACEHOLDER}' \\\n"
            f"  -H 'Content-Type: application/json' \\\n"
            f"  -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'",
        },
        {
            "id": "statusline", "title": "Claude Code status line (~/.claude/settings.json)", "lang": "json",
            "code": json.dumps({"statusLine": {"type": "command", "command": "oneplan statusline"}}, indent=2)
            + f"\n\n# with: export ONEPLAN_URL={base} ONEPLAN_API_KEY={PLACEHOLDER}",
        },
    ]
