"""Inbound protocols (OpenAI Chat, Anthropic Messages, OpenAI Responses) and the canonical form.

Pure code: parsing, rendering and incremental stream translation. No I/O.
"""
