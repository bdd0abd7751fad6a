"""Client configuration: what points one coding agent at the loopback server.

Owns: the documented MCP-config shape of each supported client (Claude Code, Codex CLI,
Gemini CLI, Cursor, VS Code, Windsurf, Zed, opencode, a generic URL-plus-headers form, and
for clients that launch only stdio servers — Claude Desktop, and a generic stdio entry — the
``command``/``args``/``env`` that starts ``python -m loopback stdio``);
which clients expand environment variables, so that the token travels in the environment
rather than in a file; the command-line arguments and environment a run needs, and on
which of an agent's command lines those arguments belong (``agent_call``: only where it
starts a session; its other subcommands reject them); the agents' traps a run must know
(``codex exec`` waits on standard input; the hint for an agent that failed the way an
untrusted folder or an unapproved project server makes it fail); and the
validation that keeps a header value with a newline (or any other injection) out of every
file and argument; and ``curl_command``, one request as a shell line with every header a
call needs.
Must not know: sockets, threads, MCP protocol (``curl_command`` is given the body and version). It is pure: it returns text, arguments and
environment; writing files (mode 0600 when ``holds_secret``) and removing them after the run
is the caller's job.

Each shape follows the client's own documentation; the test module cites the page for each.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Sequence
from urllib.parse import urlsplit

from .http11 import is_token

__all__ = [
    "FORMATS",
    "curl_command",
    "TOKEN_ENV",
    "HEADER_ENV_PREFIX",
    "MCP_CONFIG_PLACEHOLDER",
    "STDIO_FORMATS",
    "ClientConfig",
    "AgentCall",
    "agent_call",
    "failure_hint",
    "render",
    "render_stdio_discovery",
    "header_env_name",
    "describe",
]

FORMATS: tuple[str, ...] = (
    "claude",
    "codex",
    "gemini",
    "cursor",
    "vscode",
    "windsurf",
    "zed",
    "opencode",
    "generic",
    "claude-desktop",
    "stdio",
)

STDIO_FORMATS: tuple[str, ...] = ("claude-desktop", "stdio")
"""Formats whose client starts ``python -m loopback stdio`` and talks to it on stdin/stdout."""

TOKEN_ENV = "LOOPBACK_TOKEN"
"""Default name of the environment variable that carries the bearer token."""

HEADER_ENV_PREFIX = "LOOPBACK_HEADER_"
"""Prefix of the generated environment variables that carry extra header values."""

MCP_CONFIG_PLACEHOLDER = "{mcp_config}"
"""An element of ``ClientConfig.args`` equal to this stands for the written file's path."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything one agent run needs to reach the server, for one client format.

    ``args`` may hold the element ``"{mcp_config}"``: replace it with the path of the file
    the caller wrote ``text`` to (``args_for`` does that). When ``config_env`` is set, the
    agent finds the file through that environment variable (``env_for`` adds it).
    """

    format: str
    filename: str
    """Suggested file name; ``describe(format)`` says where the client looks for it."""
    text: str
    """File content: pretty JSON ending in a newline, or TOML for codex."""
    env: Mapping[str, str]
    """Environment variables the agent process needs (the token, where the client expands it)."""
    args: tuple[str, ...]
    """Extra command-line arguments for the agent."""
    holds_secret: bool
    """True when ``text`` contains the token itself: write it 0600 and remove it after the run."""
    config_env: Optional[str]
    """Environment variable that must name the written file's path, or None."""

    def args_for(self, config_path: str) -> tuple[str, ...]:
        """``args`` with the ``{mcp_config}`` placeholder replaced by ``config_path``."""
        return tuple(config_path if arg == MCP_CONFIG_PLACEHOLDER else arg for arg in self.args)

    def env_for(self, config_path: str) -> dict[str, str]:
        """``env`` plus, when the client needs it, ``config_env`` set to ``config_path``."""
        environment = dict(self.env)
        if self.config_env is not None:
            environment[self.config_env] = config_path
        return environment

    def __repr__(self) -> str:
        # Never show the token: env values and (possibly secret) text stay out of reprs.
        return (
            f"ClientConfig(format={self.format!r}, filename={self.filename!r}, "
            f"env_names={sorted(self.env)!r}, args={self.args!r}, "
            f"holds_secret={self.holds_secret!r}, config_env={self.config_env!r})"
        )


# --- validation -------------------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110 section 5.6.2: token = 1*tchar.
# RFC 9110 section 11.2: token68, the shape of a Bearer credential.
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 3986 characters, less "$": several clients expand "$..." in URLs.
_URL_RE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!&'()*+,;=%]+")

# Headers the client's HTTP transport sets itself; an extra value would clash with it.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "content-type",
        "accept",
        "connection",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    }
)


def _check_header_value(label: str, value: str) -> None:
    # RFC 9110 section 5.5: field-vchar = VCHAR / obs-text, with SP/HTAB inside.
    # CR, LF, NUL and other controls are refused, so a value can never split a header
    # or a config line, whatever the file format.
    if not isinstance(value, str):
        raise TypeError(f"{label} must be a str")
    if value == "":
        # Codex sends an env-sourced header only when its value is non-empty.
        raise ValueError(f"{label} must not be empty")
    for char in value:
        code = ord(char)
        if not (code == 0x09 or 0x20 <= code <= 0x7E or 0x80 <= code <= 0xFF):
            raise ValueError(f"{label} contains a forbidden character {char!r}")
    if value != value.strip(" \t"):
        raise ValueError(f"{label} must not start or end with whitespace")


def _check_inputs(url: str, token: str, name: str, token_env: str) -> None:
    if not isinstance(url, str) or not _URL_RE.fullmatch(url):
        raise ValueError(f"url {url!r} has characters outside RFC 3986 (or a '$')")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url {url!r} must be an absolute http(s) URL")
    if not isinstance(token, str) or not _TOKEN68_RE.fullmatch(token):
        raise ValueError("token must be a non-empty Bearer token68 string")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"name {name!r} must be 1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit"
        )
    if not isinstance(token_env, str) or not _ENV_NAME_RE.fullmatch(token_env):
        raise ValueError(f"token_env {token_env!r} is not an environment variable name")


@dataclass(frozen=True)
class _Header:
    name: str
    value: str
    env_name: str  # where the value travels for clients that expand the environment


def header_env_name(header_name: str) -> str:
    """The environment variable that carries ``header_name``'s value (``LOOPBACK_HEADER_X_KEY``)."""
    return HEADER_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", header_name.upper())


def _check_headers(headers: Optional[Mapping[str, str]], token_env: str) -> tuple[_Header, ...]:
    if headers is None:
        return ()
    seen: dict[str, str] = {}
    env_names = {token_env: "the token"}
    result = []
    for header_name, value in headers.items():
        if not isinstance(header_name, str) or not is_token(header_name):
            raise ValueError(f"header name {header_name!r} is not an RFC 9110 token")
        folded = header_name.lower()
        if folded in _RESERVED_HEADERS:
            raise ValueError(f"header {header_name!r} is set by the client or by loopback itself")
        if folded in seen:
            raise ValueError(f"header {header_name!r} repeats {seen[folded]!r} (names ignore case)")
        seen[folded] = header_name
        _check_header_value(f"header {header_name!r}", value)
        env_name = header_env_name(header_name)
        if env_name in env_names:
            raise ValueError(
                f"header {header_name!r} and {env_names[env_name]} would share the variable {env_name}"
            )
        env_names[env_name] = f"header {header_name!r}"
        result.append(_Header(header_name, value, env_name))
    return tuple(result)


# --- rendering helpers ------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    url: str
    token: str
    name: str
    token_env: str
    headers: tuple[_Header, ...]
    inline_secrets: bool
    python: Optional[str] = None
    python_path: Optional[str] = None


def _json_text(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


# How each client spells "the value of environment variable NAME" inside a string.
def _dollar_brace(env_name: str) -> str:
    return "${" + env_name + "}"


def _dollar_env(env_name: str) -> str:
    return "${env:" + env_name + "}"


def _brace_env(env_name: str) -> str:
    return "{env:" + env_name + "}"


@dataclass(frozen=True)
class _Headers:
    values: dict[str, str]
    env: dict[str, str]
    holds_secret: bool


def _headers_for(run: _Run, reference: Optional[Callable[[str], str]]) -> _Headers:
    """Header map for a JSON client: env references if it expands them, else literals."""
    if reference is None or run.inline_secrets:
        if reference is not None:
            # Written literally into a file the client expands: "$" or "{" could be read
            # as a variable reference and silently replaced.
            for header in run.headers:
                if "$" in header.value or "{" in header.value:
                    raise ValueError(
                        f"header {header.name!r}: '$' and '{{' would be expanded by this client"
                    )
        values = {"Authorization": f"Bearer {run.token}"}
        values.update((header.name, header.value) for header in run.headers)
        return _Headers(values, {}, holds_secret=True)
    values = {"Authorization": f"Bearer {reference(run.token_env)}"}
    values.update((header.name, reference(header.env_name)) for header in run.headers)
    env = {run.token_env: run.token}
    env.update((header.env_name, header.value) for header in run.headers)
    return _Headers(values, env, holds_secret=False)


def _toml_string(value: str) -> str:
    """A TOML basic string (TOML 1.0 section "String")."""
    escapes = {
        '"': '\\"',
        "\\": "\\\\",
        "\b": "\\b",
        "\t": "\\t",
        "\n": "\\n",
        "\f": "\\f",
        "\r": "\\r",
    }
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_inline_table(table: Mapping[str, str]) -> str:
    # Keys quoted as in Codex's own examples; header names may hold "." or other tchars.
    return "{ " + ", ".join(f"{_toml_string(k)} = {_toml_string(v)}" for k, v in table.items()) + " }"


# --- one builder per format -------------------------------------------------------------


def _config(
    format: str,
    filename: str,
    text: str,
    env: Mapping[str, str],
    holds_secret: bool,
    *,
    args: tuple[str, ...] = (),
    config_env: Optional[str] = None,
) -> ClientConfig:
    # A read-only env, so that a shared ClientConfig cannot be altered in place.
    return ClientConfig(format, filename, text, MappingProxyType(dict(env)), args, holds_secret, config_env)


def _claude(run: _Run) -> ClientConfig:
    headers = _headers_for(run, _dollar_brace)
    server = {"type": "http", "url": run.url, "headers": headers.values}
    text = _json_text({"mcpServers": {run.name: server}})
    # --mcp-config and --allowedTools take several values: a trailing boolean flag ends
    # them, so a prompt the caller appends is not read as a config path.
    args = (
        "--mcp-config",
        MCP_CONFIG_PLACEHOLDER,
        "--allowedTools",
        f"mcp__{run.name}",
        "--strict-mcp-config",
    )
    return _config("claude", "mcp.json", text, headers.env, headers.holds_secret, args=args)


def _codex(run: _Run) -> ClientConfig:
    if run.inline_secrets:
        # Codex refuses inline bearer tokens, and -c overrides would show one in `ps`.
        raise ValueError("codex reads secrets only from the environment: no inline_secrets")
    prefix = f"mcp_servers.{run.name}"
    settings = [
        ("url", _toml_string(run.url)),
        ("bearer_token_env_var", _toml_string(run.token_env)),
        # Without this, Codex asks before each tool call; unattended runs cancel it.
        ("default_tools_approval_mode", _toml_string("approve")),
    ]
    if run.headers:
        header_env = {header.name: header.env_name for header in run.headers}
        settings.append(("env_http_headers", _toml_inline_table(header_env)))
    text = f"[{prefix}]\n" + "".join(f"{key} = {value}\n" for key, value in settings)
    args: list[str] = []
    for key, value in settings:
        args += ["-c", f"{prefix}.{key}={value}"]
    env = {run.token_env: run.token}
    env.update((header.env_name, header.value) for header in run.headers)
    return _config("codex", "config.toml", text, env, False, args=tuple(args))


def _gemini(run: _Run) -> ClientConfig:
    if "_" in run.name:
        raise ValueError("gemini: its MCP documentation says not to use '_' in server names")
    for header in run.headers:
        # Gemini expands headers again when it connects, so a '$' in a value is not safe
        # even when the value arrives through the environment.
        if "$" in header.value:
            raise ValueError(f"gemini: header {header.name!r} must not contain '$'")
    headers = _headers_for(run, _dollar_brace)
    server = {"httpUrl": run.url, "headers": headers.values, "trust": True}
    text = _json_text({"mcpServers": {run.name: server}})
    return _config(
        "gemini",
        "settings.json",
        text,
        headers.env,
        headers.holds_secret,
        config_env="GEMINI_CLI_SYSTEM_SETTINGS_PATH",
    )


def _cursor(run: _Run) -> ClientConfig:
    headers = _headers_for(run, _dollar_env)
    text = _json_text({"mcpServers": {run.name: {"url": run.url, "headers": headers.values}}})
    return _config("cursor", "mcp.json", text, headers.env, headers.holds_secret)


def _vscode(run: _Run) -> ClientConfig:
    headers = _headers_for(run, _dollar_env)
    server = {"type": "http", "url": run.url, "headers": headers.values}
    text = _json_text({"servers": {run.name: server}})
    return _config("vscode", "mcp.json", text, headers.env, headers.holds_secret)


def _windsurf(run: _Run) -> ClientConfig:
    headers = _headers_for(run, _dollar_env)
    text = _json_text({"mcpServers": {run.name: {"serverUrl": run.url, "headers": headers.values}}})
    return _config("windsurf", "mcp_config.json", text, headers.env, headers.holds_secret)


def _zed(run: _Run) -> ClientConfig:
    headers = _headers_for(run, None)  # Zed does not expand variables in settings.json
    text = _json_text({"context_servers": {run.name: {"url": run.url, "headers": headers.values}}})
    return _config("zed", "settings.json", text, headers.env, headers.holds_secret)


def _opencode(run: _Run) -> ClientConfig:
    headers = _headers_for(run, _brace_env)
    server = {
        "type": "remote",
        "url": run.url,
        "enabled": True,
        # A bearer-token server: no OAuth discovery or browser login on a 401.
        "oauth": False,
        "headers": headers.values,
    }
    text = _json_text({"$schema": "https://opencode.ai/config.json", "mcp": {run.name: server}})
    return _config(
        "opencode", "opencode.json", text, headers.env, headers.holds_secret, config_env="OPENCODE_CONFIG"
    )


def _generic(run: _Run) -> ClientConfig:
    headers = _headers_for(run, None)
    text = _json_text({"url": run.url, "headers": headers.values})
    return _config("generic", "loopback.json", text, headers.env, headers.holds_secret)


# --- stdio: the client starts the bridge ------------------------------------------------


def _own_python_path() -> Optional[str]:
    """The ``PYTHONPATH`` this interpreter needs to import this very copy of loopback from
    any directory (a checkout, a vendored copy), or None where it is installed."""
    import site
    import sysconfig

    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    places = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    if site.ENABLE_USER_SITE:
        places.append(site.getusersitepackages())
    if any(place and os.path.abspath(place) == parent for place in places):
        return None
    return parent


def _stdio_entry(python: Optional[str], args: list[str], env: dict[str, str], python_path: Optional[str]) -> dict[str, Any]:
    if python is None:  # this interpreter: what it needs to find this loopback is known
        python, python_path = sys.executable, _own_python_path()
    if python_path is not None:
        env = {**env, "PYTHONPATH": python_path}
    entry: dict[str, Any] = {"command": python, "args": ["-m", "loopback", "stdio", *args]}
    if env:
        entry["env"] = env
    return entry


_STDIO_FILENAMES = {"claude-desktop": "claude_desktop_config.json", "stdio": "mcp.json"}


def _stdio(format: str) -> Callable[[_Run], ClientConfig]:
    def build(run: _Run) -> ClientConfig:
        # The file launches the bridge, which reads the token from its environment: the
        # "env" block. Claude Desktop expands no variables there, so the block holds the
        # token itself (holds_secret: keep the file 0600).
        args = ["--url", run.url]
        if run.token_env != TOKEN_ENV:
            args += ["--token-env", run.token_env]
        env = {run.token_env: run.token}
        for header in run.headers:
            args += ["--header", header.name]  # the value comes from header.env_name
            env[header.env_name] = header.value
        entry = _stdio_entry(run.python, args, env, run.python_path)
        return _config(format, _STDIO_FILENAMES[format], _json_text({"mcpServers": {run.name: entry}}), {}, True)

    return build


def render_stdio_discovery(
    format: str,
    *,
    runtime_dir: str,
    name: str = "loopback",
    python: Optional[str] = None,
    python_path: Optional[str] = None,
) -> ClientConfig:
    """A stdio entry that finds the newest running ``serve`` each time the client starts
    it, through the runtime files in ``runtime_dir``: no URL and no token in the file
    (``holds_secret`` False), and it keeps working when ``serve`` restarts with a new token.
    ``python`` runs ``-m loopback stdio`` with ``python_path`` as its ``PYTHONPATH`` (if
    given); by default this interpreter, with the ``PYTHONPATH`` it needs to import this
    copy of loopback when that is not installed (a checkout, a vendored copy)."""
    if format not in STDIO_FORMATS:
        raise ValueError(f"{format!r} is not a stdio format ({', '.join(STDIO_FORMATS)})")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"name {name!r} must be 1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit")
    entry = _stdio_entry(python, [], {"LOOPBACK_RUNTIME_DIR": runtime_dir}, python_path)
    text = _json_text({"mcpServers": {name: entry}})
    return _config(format, _STDIO_FILENAMES[format], text, {}, False)


@dataclass(frozen=True)
class _Format:
    build: Callable[[_Run], ClientConfig]
    description: str


_FORMATS: dict[str, _Format] = {
    "claude": _Format(
        _claude,
        "Claude Code: mcp.json given to `claude --mcp-config FILE --strict-mcp-config`",
    ),
    "codex": _Format(
        _codex,
        "Codex CLI: `-c mcp_servers.NAME...` overrides for one run, or a table for ~/.codex/config.toml",
    ),
    "gemini": _Format(
        _gemini,
        "Gemini CLI: settings.json named by the GEMINI_CLI_SYSTEM_SETTINGS_PATH environment variable",
    ),
    "cursor": _Format(_cursor, "Cursor: .cursor/mcp.json in the project, or ~/.cursor/mcp.json"),
    "vscode": _Format(_vscode, "VS Code: .vscode/mcp.json in the workspace, or the user-profile mcp.json"),
    "windsurf": _Format(_windsurf, "Windsurf: ~/.codeium/windsurf/mcp_config.json"),
    "zed": _Format(
        _zed,
        "Zed: context_servers for .zed/settings.json or ~/.config/zed/settings.json (holds the token)",
    ),
    "opencode": _Format(
        _opencode,
        "opencode: opencode.json named by the OPENCODE_CONFIG environment variable",
    ),
    "generic": _Format(_generic, "any Streamable HTTP client: URL and headers as JSON (holds the token)"),
    "claude-desktop": _Format(
        _stdio("claude-desktop"),
        "Claude Desktop: an mcpServers entry for claude_desktop_config.json that starts the stdio bridge",
    ),
    "stdio": _Format(
        _stdio("stdio"),
        "any client that launches stdio servers: command, args and env of the stdio bridge",
    ),
}
assert tuple(_FORMATS) == FORMATS


def _format(format: str) -> _Format:
    try:
        return _FORMATS[format]
    except (KeyError, TypeError):
        expected = ", ".join(FORMATS)
        raise ValueError(f"unknown client format {format!r}; expected one of: {expected}") from None


def curl_command(url: str, protocol_version: str, message: Mapping[str, Any], token_env: str = TOKEN_ENV) -> str:
    """One JSON-RPC ``message`` POSTed with curl: a shell line with every header a call needs.

    The token is read from the shell's ``$token_env``, never written into the line.
    """
    import shlex  # only the CLI's banner needs it

    _check_inputs(url, "x", "loopback", token_env)
    body = json.dumps(message, separators=(",", ":"))
    return " ".join([
        "curl -sS", shlex.quote(url),
        "-H 'Content-Type: application/json'",
        "-H 'Accept: application/json, text/event-stream'",
        f'-H "Authorization: Bearer ${token_env}"',
        "-H " + shlex.quote(f"MCP-Protocol-Version: {protocol_version}"),
        "-d " + shlex.quote(body),
    ])


def describe(format: str) -> str:
    """One line for CLI help: the client and where its configuration goes."""
    return _format(format).description


def render(
    format: str,
    url: str,
    token: str,
    *,
    name: str = "loopback",
    headers: Optional[Mapping[str, str]] = None,
    token_env: str = TOKEN_ENV,
    inline_secrets: bool = False,
    python: Optional[str] = None,
    python_path: Optional[str] = None,
) -> ClientConfig:
    """The configuration that points a ``format`` client at ``url`` with ``token``.

    ``headers`` are extra per-run headers (for example ``X-Session-Key``) sent with every
    request. Where the client expands environment variables, the token and the header
    values travel in ``env`` (the token as ``token_env``, each header as
    ``LOOPBACK_HEADER_<NAME>``) and ``text`` holds only references to them; elsewhere
    ``text`` holds them literally and ``holds_secret`` is True. ``inline_secrets=True``
    writes them literally for every client that allows it (not codex): the way round a
    client build whose expansion is broken.

    The stdio formats (``STDIO_FORMATS``) start ``python -m loopback stdio --url URL`` with
    ``python`` and ``python_path`` as its ``PYTHONPATH`` (if given); by default this
    interpreter, with the ``PYTHONPATH`` that finds this copy of loopback when it is not
    installed. The token and header values are in the entry's ``env`` block (``holds_secret``).

    Raises ValueError for an unknown format, or for a name, URL, token, header name or
    header value that could not be written safely (a CR or LF in a value, for one).
    """
    spec = _format(format)
    _check_inputs(url, token, name, token_env)
    run = _Run(url, token, name, token_env, _check_headers(headers, token_env), inline_secrets,
               python, python_path)
    return spec.build(run)


# --- agents' command lines ----------------------------------------------------------------

# Claude Code's subcommands: none of them starts a session, and `mcp` ones reject
# --mcp-config ("unknown option"). A session is `claude [options] [PROMPT]` or `claude -p`.
_CLAUDE_SUBCOMMANDS = frozenset({
    "mcp", "config", "doctor", "update", "upgrade", "install", "migrate-installer",
    "setup-token", "plugin", "plugins", "auth", "login", "logout", "agents",
})
# Codex: the interactive session (no subcommand), `exec` (alias `e`) and `resume`.
_CODEX_SESSIONS = frozenset({"exec", "e", "resume"})
_CODEX_EXEC = frozenset({"exec", "e"})
_INFO_FLAGS = frozenset({"-h", "--help", "-v", "-V", "--version"})

GEMINI_UNTRUSTED_EXIT = 55
"""Gemini CLI's exit code when it refuses to run in a folder it does not trust."""


@dataclass(frozen=True)
class AgentCall:
    """What one agent command line needs from a run.

    ``session``: the line starts an agent session, so the format's arguments belong on it;
    elsewhere (``claude mcp list``, ``codex mcp list``, ``--version``) they are left out and
    the run's environment alone goes to the agent. ``closed_stdin``: the agent waits on its
    standard input unless it is closed (``codex exec`` reads "additional input" from it).
    """

    session: bool
    closed_stdin: bool


def _first_word(args: Sequence[str]) -> Optional[str]:
    for arg in args:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def agent_call(format: str, argv: Sequence[str]) -> AgentCall:
    """How the ``format`` agent's command line ``argv`` (executable first) takes a run.

    Claude Code: a session unless the first argument is a subcommand (``mcp``, ``config``,
    ``doctor``...) or ``--help``/``--version``. Codex: a session without a subcommand, or for
    ``exec``/``e``/``resume``; ``exec`` gets its standard input closed unless its prompt is
    ``-`` (read from standard input). Other formats carry no arguments, so every line is a
    session for them (their config travels in the environment).
    """
    _format(format)
    args = list(argv[1:])
    if any(arg in _INFO_FLAGS for arg in args[:1]):
        return AgentCall(session=False, closed_stdin=False)
    if format == "claude":
        return AgentCall(session=not args or args[0] not in _CLAUDE_SUBCOMMANDS, closed_stdin=False)
    if format == "codex":
        word = _first_word(args)
        if word is None:
            return AgentCall(session=True, closed_stdin=False)
        exec_args = args[args.index(word) + 1:]
        return AgentCall(session=word in _CODEX_SESSIONS,
                         closed_stdin=word in _CODEX_EXEC and "-" not in exec_args)
    return AgentCall(session=True, closed_stdin=False)


def failure_hint(format: str, returncode: int, *, project_mcp_json: bool = False) -> Optional[str]:
    """One factual line on how the ``format`` agent may have failed, or None.

    Gemini CLI exits 55 when it refuses an untrusted folder (its MCP servers are then
    disabled). Claude Code keeps the servers of a project ``.mcp.json`` (``project_mcp_json``:
    the agent's working directory has one) pending until the user approves them.
    """
    if format == "gemini" and returncode == GEMINI_UNTRUSTED_EXIT:
        return ("Gemini CLI exits 55 when it does not trust the folder it runs in (its MCP servers are then "
                "disabled); trusting it (GEMINI_CLI_TRUST_WORKSPACE=true or --skip-trust) is your decision")
    if format == "claude" and returncode != 0 and project_mcp_json:
        return ("Claude Code keeps the servers of a project .mcp.json \"Pending approval\" until they are "
                "approved (enableAllProjectMcpServers in its settings, or interactively)")
    return None
