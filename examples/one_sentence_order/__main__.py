"""``python -m examples.one_sentence_order [options] "order two large lattes to the office ..."``

Exit status: 0 an order was placed (its receipt is printed), 1 the agent stopped without one
(the reason is printed), 2 bad options, 3 oneplan could not be reached or refused the request.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from examples.one_sentence_order.agent import Agent, Options, receipt
from examples.one_sentence_order.shop import Shop

DEFAULT_DB = Path("~/.local/share/oneplan-example/shop.db").expanduser()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m examples.one_sentence_order",
        description="One sentence, one order: an agent that places a coffee order through oneplan.")
    p.add_argument("sentence", help='e.g. "order two large lattes to the office, oat milk, default card"')
    p.add_argument("--model", default=os.environ.get("ONEPLAN_MODEL", "qwen3.7-plus"),
                   help="any model name your oneplan plan includes (env ONEPLAN_MODEL)")
    p.add_argument("--protocol", choices=("openai", "anthropic"), default="openai",
                   help="speak OpenAI Chat Completions (openai SDK) or Anthropic Messages (anthropic SDK)")
    p.add_argument("--base-url", default=os.environ.get("ONEPLAN_URL", "http://127.0.0.1:4000"),
                   help="the oneplan server (env ONEPLAN_URL)")
    p.add_argument("--api-key", default=os.environ.get("ONEPLAN_API_KEY"),
                   help="your oneplan key (env ONEPLAN_API_KEY)")
    p.add_argument("--db", default=os.environ.get("ONEPLAN_SHOP_DB", str(DEFAULT_DB)),
                   help=f"the shop's SQLite file, created and stocked on first use (env ONEPLAN_SHOP_DB; "
                   f"default {DEFAULT_DB})")
    p.add_argument("--now", help="the shop's clock, ISO time (e.g. 2026-12-01T09:30): default the real time")
    p.add_argument("--confirm-above", type=float, default=25.0,
                   help="ask before paying a total above this (default 25.00)")
    p.add_argument("--yes", action="store_true", help="approve any total without asking")
    p.add_argument("--answer", action="append", default=[],
                   help="the answer to the agent's clarifying question, if it asks one")
    p.add_argument("--idempotency-key", help="reuse to replay a run without ordering twice")
    p.add_argument("--max-turns", type=int, default=12)
    p.add_argument("--quiet", action="store_true", help="print only the receipt or the reason")
    return p.parse_args(argv)


def client_for(args: argparse.Namespace) -> Any:
    base = args.base_url.rstrip("/").removesuffix("/v1")
    if args.protocol == "anthropic":
        import anthropic

        return anthropic.Anthropic(base_url=base, api_key=args.api_key, max_retries=1)
    import openai

    return openai.OpenAI(base_url=f"{base}/v1", api_key=args.api_key, max_retries=1)


def api_errors() -> tuple[type[Exception], ...]:
    """The SDKs' errors (only the SDKs that are installed)."""
    errors: list[type[Exception]] = []
    for name in ("openai", "anthropic"):
        module = sys.modules.get(name)
        if module is not None:
            errors.append(module.APIError)
    return tuple(errors)


def ask_stdin(prompt: str) -> str | None:
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        print()
        return None
    if not sys.stdin.isatty():
        print(line.strip())
    return line.strip()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.api_key:
        print("no oneplan key: pass --api-key or set ONEPLAN_API_KEY", file=sys.stderr)
        return 2
    try:
        now = datetime.fromisoformat(args.now) if args.now else None
    except ValueError:
        print(f"--now {args.now!r} is not an ISO time like 2026-12-01T09:30", file=sys.stderr)
        return 2
    db = Path(args.db).expanduser()
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        shop = Shop(db, now=(lambda: now) if now else datetime.now)
    except (OSError, sqlite3.Error) as exc:
        print(f"cannot open the shop's database {db}: {exc}", file=sys.stderr)
        return 2
    options = Options(model=args.model, protocol=args.protocol, confirm_above_cents=round(args.confirm_above * 100),
                      assume_yes=args.yes, answers=list(args.answer), max_turns=args.max_turns)
    if args.idempotency_key:
        options.idempotency_key = args.idempotency_key
    say = (lambda _text: None) if args.quiet else print
    try:
        client = client_for(args)
    except ImportError as exc:
        shop.close()
        print(f"the {exc.name} SDK is not installed: pip install {exc.name}", file=sys.stderr)
        return 2
    agent = Agent(shop, options, client, ask=ask_stdin, say=say)
    try:
        outcome = agent.run(args.sentence)
    except KeyboardInterrupt:
        print("\ninterrupted" + (": an order was placed, see get_order_status" if agent.orders else ""),
              file=sys.stderr)
        return 130
    except api_errors() as exc:
        if type(exc).__name__ in ("APIConnectionError", "APITimeoutError"):
            print(f"cannot reach oneplan at {args.base_url} ({exc}): is `oneplan serve` running?", file=sys.stderr)
        else:
            print(f"oneplan at {args.base_url} refused the request: {describe(exc)}", file=sys.stderr)
        if agent.orders:
            print("\n".join(receipt(o) for o in agent.orders.values()))
        return 3
    finally:
        shop.close()
    for order in outcome.orders:
        print(receipt(order))
    print(outcome.message)
    if not outcome.placed:
        print("No order was placed.")
        return 1
    return 0


def describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    message = getattr(exc, "message", str(exc))
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
    return f"{status}: {message}" if status else message


if __name__ == "__main__":
    raise SystemExit(main())
