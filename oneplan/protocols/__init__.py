"""Inbound protocols (OpenAI Chat, Anthropic Messages, OpenAI Responses) and the canonical form.

One subpackage per wire protocol, each with its parser and validation schema, renderer, stream
renderer and outbound codec, and one ``PROTOCOL`` object (``base.Protocol``); ``registry``
lists them. Pure code: parsing, rendering and incremental stream translation. No I/O.
"""
