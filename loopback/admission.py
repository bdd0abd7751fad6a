"""Admission: whether one HTTP request head may go on to its body and to MCP dispatch.

Owns: the checks a request passes before its body is read, in one documented order,
each answered before the next is looked at:

  Host (403; 400 when malformed) → Origin (403) → path (404) → CORS preflight (204)
  → bearer token (401) → HTTP method (405) → Content-Type (415) → Accept (406)
  → body framing: Transfer-Encoding (501) and Content-Length (411/400/413).

Host and Origin come first because they are the DNS-rebinding defence: nothing else
is said to a page that a browser was tricked into sending here. The session header
is checked against the session table by the connection (``session_refusal`` holds
the rule), and the protocol version by dispatch, which needs the body to tell the
era. Also the CORS fields of loopback origins.
Pure: a parsed head, the settings and the token store in; an ``Admission``, a
``Preflight`` or an ``HttpError`` out. Must not know: sockets, sessions' storage,
MCP methods.
"""

from __future__ import annotations

import functools
from typing import Optional, Union
from urllib.parse import urlsplit

from . import listening
from .auth import Grant, TokenStore
from .errors import HttpError
from .http11 import RequestHead, body_framing, split_absolute_form
from .listening import MCP_PATH
from .settings import Settings

SESSION_HEADER = "Mcp-Session-Id"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
STATELESS_METHODS = "POST, OPTIONS"
_CORS_ALLOW_HEADERS = ("Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, "
                       "Last-Event-ID, Mcp-Method, Mcp-Name")
_CORS_EXPOSE_HEADERS = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate"
_PARAM_HEADER_PREFIX = "mcp-param-"
_JSON_TYPES = frozenset({"application/json", "application/*", "*/*"})
_SSE_TYPES = frozenset({"text/event-stream", "text/*", "*/*"})


# Checked on every request: the answer for each Host seen is kept.
is_loopback_host = functools.lru_cache(maxsize=256)(listening.is_loopback_host)


def split_host_port(value: str) -> tuple[str, Optional[int]]:
    """``host[:port]`` of a Host header; port None when absent; ValueError when malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("unclosed bracket")
        host, rest = value[: end + 1], value[end + 1:]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError("junk after address")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value:
        raise ValueError("bare IPv6 address")
    else:
        return value, None
    if not port_text.isdigit() or len(port_text) > 5:
        raise ValueError("bad port")
    return host, int(port_text)


@functools.lru_cache(maxsize=64)  # clients send the same Accept header on every request
def media_types(header: Optional[str]) -> frozenset[str]:
    """The media ranges of an Accept header that are not refused with q=0."""
    types = set()
    for part in (header or "").split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        q_zero = any(p.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in pieces[1:])
        if not q_zero:
            types.add(pieces[0].lower())
    return frozenset(types)


class Admission:
    """A request that may go on: who sent it and what it asks for."""

    __slots__ = ("grant", "method", "cors", "wants_json", "wants_sse", "chunked", "length", "session_id")

    def __init__(self, grant: Optional[Grant], method: str, cors: "Fields", wants_json: bool = False,
                 wants_sse: bool = False, chunked: bool = False, length: int = 0,
                 session_id: Optional[str] = None) -> None:
        self.grant = grant  # None: authentication is off
        self.method = method
        self.cors = cors  # response header fields for a loopback (or allowed) Origin
        self.wants_json = wants_json
        self.wants_sse = wants_sse
        self.chunked = chunked
        self.length = length
        self.session_id = session_id  # the Mcp-Session-Id sent, stripped, or None


class Preflight:
    """A CORS preflight to answer with 204 and these header fields."""

    __slots__ = ("headers",)

    def __init__(self, headers: "Fields") -> None:
        self.headers = headers


def _check_host(head: RequestHead, port: int, extra_hosts: frozenset[str]) -> Optional[HttpError]:
    """DNS-rebinding defence: the request must name a loopback host and our port."""
    absolute = split_absolute_form(head.target)
    value = absolute[0] if absolute is not None else head.headers.get("Host")
    if value is None:  # only HTTP/1.0 may omit Host (http11 refuses it for 1.1)
        return None
    try:
        host, named_port = split_host_port(value)
    except ValueError:  # RFC 9112 3.2: an invalid Host is a 400, not a policy refusal
        return HttpError(400, "Bad Request: malformed Host header")
    if not (is_loopback_host(host) or host.lower() in extra_hosts):
        return HttpError(403, "Forbidden: Host must be a loopback name")
    if (named_port if named_port is not None else 80) != port:
        return HttpError(403, "Forbidden: Host names another port")
    return None


Fields = tuple[tuple[str, str], ...]


def _cors(head: RequestHead, settings: Settings) -> Union[Fields, HttpError]:
    """The CORS header fields for the request's Origin ((): none sent), or 403."""
    origin = head.headers.get("Origin")
    if origin is None:
        return ()
    origin = origin.strip()
    lowered = origin.lower()
    if lowered not in settings.allowed_origins:
        try:
            parts = urlsplit(lowered)
            hostname = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            return HttpError(403, "Forbidden: malformed Origin")
        if not (parts.scheme in ("http", "https") and hostname and is_loopback_host(hostname)):
            return HttpError(403, "Forbidden: cross-site Origin")
    return (("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", _CORS_EXPOSE_HEADERS),
            ("Vary", "Origin"))


def _preflight(head: RequestHead, settings: Settings, cors: Fields) -> Preflight:
    allowed = STATELESS_METHODS if settings.stateless else ALLOWED_METHODS
    # 2026-07-28 clients mirror tool arguments into Mcp-Param-{Name} headers, whose names
    # no fixed list can hold: the ones the browser asks for are allowed by their prefix.
    requested = head.headers.get("Access-Control-Request-Headers") or ""
    params = [name.strip() for name in requested.split(",")
              if name.strip().lower().startswith(_PARAM_HEADER_PREFIX) and name.strip().isascii()
              and all(c.isalnum() or c in "-_" for c in name.strip())]
    allow_headers = ", ".join([_CORS_ALLOW_HEADERS, *params])
    return Preflight((*cors, ("Allow", allowed), ("Access-Control-Allow-Methods", allowed),
                      ("Access-Control-Allow-Headers", allow_headers), ("Access-Control-Max-Age", "600")))


def authenticate(value: Optional[str], tokens: TokenStore) -> Optional[Grant]:
    """The grant of an ``Authorization: Bearer`` value, or None."""
    if not value:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return tokens.check(credentials.strip().encode("latin-1", "replace"))


def admit(head: RequestHead, *, port: int, settings: Settings, tokens: Optional[TokenStore],
          extra_hosts: frozenset[str] = frozenset(), modern_only: bool = False) -> Union[Admission, Preflight]:
    """Check one request head, in the order of this module's docstring; HttpError for a refusal.

    ``modern_only``: the request names a 2026-07-28 ``MCP-Protocol-Version``, an era
    with no GET stream and no sessions to DELETE (405 for those methods).
    """
    refusal = _check_host(head, port, extra_hosts)
    if refusal is not None:
        raise refusal
    cors = _cors(head, settings)
    if isinstance(cors, HttpError):
        raise cors
    try:
        return _admit(head, settings, tokens, modern_only, cors)
    except HttpError as error:  # a page on a loopback origin may read why it was refused
        error.headers = (*cors, *error.headers)
        raise


def _admit(head: RequestHead, settings: Settings, tokens: Optional[TokenStore], modern_only: bool,
           cors: Fields) -> Union[Admission, Preflight]:
    absolute = split_absolute_form(head.target)
    path = (absolute[1] if absolute is not None else head.target).split("?", 1)[0]
    if path != MCP_PATH:
        raise HttpError(404, f"Not Found: the MCP endpoint is {MCP_PATH}")
    method = head.method
    if method == "OPTIONS":
        return _preflight(head, settings, cors)
    grant: Optional[Grant] = None
    if tokens is not None:
        grant = authenticate(head.headers.get("Authorization"), tokens)
        if grant is None:
            raise HttpError(401, "Unauthorized: send 'Authorization: Bearer <token>'",
                            headers=(("WWW-Authenticate", 'Bearer realm="loopback"'),))
    session_value = head.headers.get(SESSION_HEADER)
    session_id = session_value.strip() if session_value is not None else None
    if method == "POST":
        content_type = (head.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(415, "Unsupported Media Type: Content-Type must be application/json")
        accept = head.headers.get("Accept")
        accepted = media_types(accept)
        # No Accept header means anything; one that refuses everything (q=0) means nothing.
        wants_json = not (accept or "").strip() or bool(accepted & _JSON_TYPES)
        wants_sse = bool(accepted & _SSE_TYPES)
        if not (wants_json or wants_sse):
            raise HttpError(406, "Not Acceptable: Accept must allow application/json or text/event-stream")
        chunked, length = body_framing(head.headers, settings.max_body_bytes)
        return Admission(grant, method, cors, wants_json, wants_sse, chunked, length, session_id)
    if method in ("GET", "DELETE") and not settings.stateless and not modern_only:
        if method == "GET" and not media_types(head.headers.get("Accept")) & _SSE_TYPES:
            raise HttpError(406, "Not Acceptable: Accept must allow text/event-stream")
        return Admission(grant, method, cors, session_id=session_id)
    allowed = STATELESS_METHODS if settings.stateless or method in ("GET", "DELETE") else ALLOWED_METHODS
    raise HttpError(405, f"Method Not Allowed: {method} (this server takes {allowed.replace(', OPTIONS', '')})",
                    headers=(("Allow", allowed),))


def session_refusal(session_id: Optional[str], found: bool) -> Optional[HttpError]:
    """The answer to a request naming ``session_id`` (None: none named) that the table
    ``found`` (live and bound to the same grant): 400 for none, 404 for unknown or another's.

    Another token's session gets the same 404 as an unknown id, so ids cannot be probed
    across grants.
    """
    if not session_id:
        return HttpError(400, "Bad Request: Mcp-Session-Id header is required (send initialize first)")
    if not found:
        return HttpError(404, "Not Found: unknown or ended session; send initialize again")
    return None
