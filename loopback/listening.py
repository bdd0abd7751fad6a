"""What a server needs to listen before its request machinery is loaded.

Owns: the endpoint path, which hosts count as loopback, the defaults of the settings
that decide how a server listens (``Settings`` takes its defaults from here), minting a
bearer token, and the package logger fetched on first use. All of it with modules a
host process has already loaded (``os``, ``binascii``): ``ensure()`` binds, listens and
returns a URL and token before ``settings``, ``auth`` and the rest are imported (the
serving thread imports them while the first connections wait in the backlog).
Must not know: sockets, threads, HTTP or MCP messages.
"""

from __future__ import annotations

import binascii
import os

TYPE_CHECKING = False  # not from typing: this module is on the cold path of ensure()
if TYPE_CHECKING:
    import logging

MCP_PATH = "/mcp"

# The defaults of the ``Settings`` fields a server reads before its machinery loads.
AUTH = True
PORT_FALLBACK = True
ALLOW_NON_LOOPBACK = False
LISTEN_BACKLOG = None  # the kernel's limit (Linux: net.core.somaxconn)

_LOOPBACK_LITERALS = frozenset({"localhost", "127.0.0.1", "::1"})
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, any 127.0.0.0/8 address and ``::1`` (brackets allowed)."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in _LOOPBACK_LITERALS or name.endswith(".localhost"):
        return True
    import ipaddress  # only for a host that is not one of the usual literals

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh 256-bit bearer token: 43 URL-safe characters, as ``secrets.token_urlsafe(32)``
    makes them (the same ``os.urandom`` bytes and alphabet, without importing ``secrets``)."""
    return binascii.b2a_base64(os.urandom(32), newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def logger() -> logging.Logger:
    """The ``loopback`` logger (``logging`` is imported on the first message)."""
    import logging

    return logging.getLogger("loopback")
