"""Starting the things under test: oneplan, LiteLLM's proxy, or nothing (the upstream directly);
the other peers are in peers.py.

Why one `Target` shape: every scenario runs the same way whatever answers it - a URL, an
Authorization header and, for a gateway, the process tree whose memory and CPU are sampled.
Both gateways get the same upstream, one worker (unless asked otherwise) and no external
database, and both check a key on every request, so the comparison is like for like.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .procs import HarnessError, Managed, Supervisor, free_port, wait_http

BENCH_DIR = Path(__file__).resolve().parent.parent
ONEPLAN_CONFIG = BENCH_DIR / "oneplan.bench.toml"
CONFIG_UPSTREAM = "http://127.0.0.1:18901/v1"  # the base_url written in oneplan.bench.toml
LITELLM_MASTER_KEY = "sk-bench-master"
ANY_STATUS = tuple(range(100, 600))


@dataclass(frozen=True)
class Target:
    """Something that answers POST /v1/chat/completions and/or POST /v1/messages."""

    name: str
    url: str  # OpenAI chat completions; "" when the target does not speak it
    auth: str | None
    process: Managed | None = None
    helpers: tuple[Managed, ...] = ()  # e.g. a private redis-server: measured and stopped with it
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (e.g. Portkey's routing)
    messages_url: str | None = None  # Anthropic Messages, when the target speaks it

    def url_for(self, protocol: str) -> str | None:
        if protocol == "anthropic":
            return self.messages_url
        return self.url or None

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(p for p in ("openai", "anthropic") if self.url_for(p))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def pids(self) -> tuple[int, ...]:
        """Roots of every process tree whose memory and CPU count as this target's."""
        procs = (self.process, *self.helpers) if self.process else self.helpers
        return tuple(p.pid for p in procs)


@dataclass(frozen=True)
class OneplanRun:
    """A started oneplan: the bench-plan target and a key on the small-quota plan."""

    target: Target
    quota_auth: str
    workers: int


def direct(upstream_port: int) -> Target:
    return Target("direct", f"http://127.0.0.1:{upstream_port}/v1/chat/completions", None)


def smoke(target: Target, body: Path, protocol: str = "openai") -> None:
    """One real request before measuring, so a misconfigured target fails loudly, not as 0 rps."""
    headers = {"Content-Type": "application/json", **dict(target.headers)}
    if target.auth:
        headers["Authorization"] = target.auth
    if protocol == "anthropic":
        headers["anthropic-version"] = "2023-06-01"
    url = target.url_for(protocol)
    if url is None:
        raise HarnessError(f"{target.name} does not serve {protocol}")
    req = urllib.request.Request(url, data=body.read_bytes(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise HarnessError(f"{target.name}: smoke request got {exc.code}: {detail}") from exc
    except OSError as exc:
        raise HarnessError(f"{target.name}: smoke request failed: {exc}") from exc
    marker = '"stop_reason"' if protocol == "anthropic" else '"choices"'
    if marker not in text:
        raise HarnessError(f"{target.name}: smoke answer has no {marker}: {text[:500]}")


# --- oneplan -----------------------------------------------------------------------------------

def oneplan_binary(explicit: str | None) -> Path | None:
    """The `oneplan` console script to benchmark, or None when it is not installed yet."""
    candidates = [Path(explicit)] if explicit else [BENCH_DIR.parent / ".venv" / "bin" / "oneplan"]
    return next((c for c in candidates if c.exists()), None)


def render_oneplan_config(upstream_port: int, workdir: Path, redis_url: str | None) -> Path:
    """oneplan.bench.toml with base_url pointed at this run's upstream (and redis, if given)."""
    text = ONEPLAN_CONFIG.read_text()
    if CONFIG_UPSTREAM not in text:
        raise HarnessError(f"{ONEPLAN_CONFIG} must contain base_url = \"{CONFIG_UPSTREAM}\"")
    text = text.replace(CONFIG_UPSTREAM, f"http://127.0.0.1:{upstream_port}/v1")
    if redis_url:
        if "\n[server]" in text:
            raise HarnessError(f"{ONEPLAN_CONFIG} has a [server] table: add redis_url there")
        text += f'\n[server]\nredis_url = "{redis_url}"\n'
    path = workdir / "oneplan.bench.toml"
    path.write_text(text)
    return path


def start_redis(sup: Supervisor, workdir: Path) -> tuple[str, Managed]:
    """A private, memory-only redis-server for `--workers 2`'s shared quota counters.

    Why private: a redis another process uses could hold keys from other runs (or tests), and
    its load would be invisible to the measurement. Returns the URL and the process.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise HarnessError("--workers 2 needs redis: run `apt-get install -y redis-server`")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]
    managed = sup.start("redis", argv)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if managed.popen.poll() is not None:
            raise HarnessError(f"redis-server exited:\n{managed.log_tail()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return f"redis://127.0.0.1:{port}/0", managed
        time.sleep(0.1)
    raise HarnessError("redis-server did not start listening within 10 s")


def _create_user(binary: Path, name: str, plan: str, config: Path, data_dir: Path) -> str:
    argv = [str(binary), "users", "create", name, "--plan", plan,
            "--config", str(config), "--data-dir", str(data_dir)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines or " " in lines[-1]:
        raise HarnessError(f"`{' '.join(argv)}` failed ({proc.returncode}):\n"
                           f"{proc.stdout[-500:]}{proc.stderr[-1500:]}")
    return lines[-1]


def start_oneplan(sup: Supervisor, binary: Path, upstream_port: int, workdir: Path,
                  workers: int) -> OneplanRun:
    """Fresh data dir, two users (plan `bench`, plan `quota`), then `oneplan serve`.

    Several workers need shared quota counters, so they get a private redis-server.
    """
    run_dir = workdir / f"oneplan-w{workers}"
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True)
    redis = start_redis(sup, run_dir) if workers > 1 else None
    config = render_oneplan_config(upstream_port, run_dir, redis[0] if redis else None)
    bench_key = _create_user(binary, "bench", "bench", config, data_dir)
    quota_key = _create_user(binary, "quota", "quota", config, data_dir)
    port = free_port()
    argv = [str(binary), "serve", "--config", str(config), "--data-dir", str(data_dir),
            "--port", str(port)]
    if workers != 1:
        argv += ["--workers", str(workers)]
    managed = sup.start(f"oneplan-w{workers}", argv, env=dict(os.environ))
    wait_http(f"http://127.0.0.1:{port}/", managed, timeout_s=60, ok_statuses=ANY_STATUS)
    name = "oneplan" if workers == 1 else f"oneplan-w{workers}"
    target = Target(name, f"http://127.0.0.1:{port}/v1/chat/completions",
                    f"Bearer {bench_key}", managed, (redis[1],) if redis else (),
                    messages_url=f"http://127.0.0.1:{port}/v1/messages")
    return OneplanRun(target, f"Bearer {quota_key}", workers)


# --- LiteLLM -----------------------------------------------------------------------------------

def _litellm_config(upstream_port: int, path: Path) -> Path:
    path.write_text(
        "model_list:\n"
        "  - model_name: bench-model\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: sk-fake\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
        # One deployment: a failed smoke request must not bench it for the next scenario.
        "router_settings:\n"
        "  disable_cooldowns: true\n"
    )
    return path


def start_litellm(sup: Supervisor, bin_dir: Path, upstream_port: int, workdir: Path) -> Target:
    """LiteLLM proxy: one uvicorn worker, no database, master-key auth, same upstream."""
    run_dir = workdir / "litellm"
    run_dir.mkdir(parents=True)
    config = _litellm_config(upstream_port, run_dir / "litellm.yaml")
    port = free_port()
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    # Offline machine: use the bundled model cost map instead of fetching it at start-up.
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    # /v1/messages for an openai/ model goes to the upstream's Responses API by default; the
    # fake upstream (like most OpenAI-compatible servers) speaks chat completions only.
    env["LITELLM_USE_CHAT_COMPLETIONS_URL_FOR_ANTHROPIC_MESSAGES"] = "True"
    argv = [str(bin_dir / "litellm"), "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
    managed = sup.start("litellm", argv, env=env, cwd=run_dir)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", managed, timeout_s=120)
    return Target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions",
                  f"Bearer {LITELLM_MASTER_KEY}", managed,
                  messages_url=f"http://127.0.0.1:{port}/v1/messages")
