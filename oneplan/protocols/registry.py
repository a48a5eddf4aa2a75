"""Every inbound protocol the gateway serves: the server builds its routes from ``PROTOCOLS``,
answers a path's failures in the protocol ``for_path`` names, and the config accepts the
``DIALECTS`` upstreams can speak. Adding a protocol is one subpackage and one line here."""

from __future__ import annotations

from oneplan.protocols import anthropic, openai_chat, responses
from oneplan.protocols.base import Protocol

# The first one also answers every path no protocol claims.
PROTOCOLS: tuple[Protocol, ...] = (openai_chat.PROTOCOL, anthropic.PROTOCOL, responses.PROTOCOL)

BY_NAME: dict[str, Protocol] = {p.name: p for p in PROTOCOLS}
# ``[providers.X] dialect = "..."``: the protocols an upstream can speak.
DIALECTS: dict[str, Protocol] = {p.dialect: p for p in PROTOCOLS if p.dialect is not None}
_PREFIXES: tuple[tuple[str, Protocol], ...] = tuple((prefix, p) for p in PROTOCOLS for prefix in p.prefixes)


def for_path(path: str) -> Protocol:
    """The protocol whose error shape a request on ``path`` is answered in."""
    for prefix, protocol in _PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return protocol
    return PROTOCOLS[0]
