# Names vulture cannot see used: they are called by a framework or a library, read by the tests
# and benchmarks, or declare a wire format. `vulture` (configured in pyproject.toml) reads this
# file with the package; each line "uses" a name. Add a name here only with the reason it lives;
# code that nothing calls is deleted instead.
# ruff: noqa
_ = object()

# -- called by a framework or a library ---------------------------------------------------------
_.collect  # prometheus_client custom collectors (server/metrics.py)
_.data_received  # asyncio.Protocol (providers/client.py, metering/resp.py)
_.pause_writing  # asyncio.Protocol flow control (providers/client.py)
_.resume_writing
_.on_body  # httptools parser callbacks (providers/client.py)
_.on_message_complete
_.run_asgi  # uvicorn's protocol starts a cycle with it (server/hot.py's HotCycle)
_.response_started  # uvicorn's cycle state, read by its protocol (server/hot.py)
_.total_requests  # uvicorn's server state, read by its --limit-max-requests (server/front.py keeps counting it)
_.waiting_for_100_continue
_.worker_app  # uvicorn factory, named as "oneplan.server.run:worker_app" (server/run.py)
_.get_mask_sizes  # transformers' cache-layer interface (local/kvcache.py)
_.query_length
_.is_initialized
_.pre_tokenizer  # tokenizers' Tokenizer attributes, assigned to configure it (local/tiny.py)
_.decoder

# -- read by the tests and benchmarks (observability counters, fixtures' builders) --------------
_.rebuilds  # metering/redis_counters.py
_.reconciled
_.given_back
_.refreshes  # server/plan_sync.py
_.evictions  # local/prefix.py
_.bytes_per_token  # local/kvcache.py
_.active  # local/scheduler.py: the running sequences (tests/local/test_engine.py)
_.wait_until  # local/scheduler.py: block until the scheduler reaches a state (tests/local/test_prefix.py)
_.ledger_rows  # store/db.py: the ledger as rows, for the tests
_.ARCHITECTURES  # local/tiny.py: the tiny checkpoints the local tests build
_.build_checkpoint
_.BY_NAME  # protocols/registry.py: the registry by protocol name

# -- wire formats: fields of request schemas, validated by pydantic, read as dict keys ----------
_.latency_ms  # metering/rows.py: LedgerRow keys, read as row["..."] and by the database
_.anomalies
_.runaway_factor  # alerts/subscriptions.py, read as settings["runaway_factor"]
_.cache_control
_.media_type
_.is_error
_.input_schema
_.disable_parallel_tool_use
_.format
_.stop_sequences
_.output_config
_.output_format
_.image_url
_.tool_call_id
_.reasoning_content
_.strict
_.json_schema
_.stream_options
_.max_completion_tokens
_.presence_penalty
_.frequency_penalty
_.reasoning_effort
_.enable_thinking
_.thinking_budget
_.chat_template_kwargs
_.encrypted_content
_.syntax
_.definition
_.verbosity
