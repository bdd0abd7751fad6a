"""clients.render: each agent's documented config shape, secrets kept out of files, no injection.

Each format's expected document is written out in full below, as its client's
documentation gives it; the page is cited beside it. The rendered text must parse
back (json / tomllib) to exactly that shape.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest

try:
    import tomllib
except ImportError:  # Python 3.9 and 3.10: the same parser from PyPI (tox deps)
    import tomli as tomllib  # type: ignore[no-redef]

from loopback import clients
from loopback.clients import (
    FORMATS,
    HEADER_ENV_PREFIX,
    MCP_CONFIG_PLACEHOLDER,
    TOKEN_ENV,
    ClientConfig,
    describe,
    render,
)

URL = "http://127.0.0.1:8765/mcp"
TOKEN = "Zm9v-YmFy_secret-token-0123456789abcdef"  # token_urlsafe shape
HEADERS = {"X-Session-Key": "session-42", "X-Agent-Id": "agent/7"}
SESSION_ENV = HEADER_ENV_PREFIX + "X_SESSION_KEY"
AGENT_ENV = HEADER_ENV_PREFIX + "X_AGENT_ID"
ENV_WITH_HEADERS = {TOKEN_ENV: TOKEN, SESSION_ENV: "session-42", AGENT_ENV: "agent/7"}
LITERAL_HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Session-Key": "session-42", "X-Agent-Id": "agent/7"}


def refs(reference: Callable[[str], str]) -> dict[str, str]:
    """The header map of a client that expands ``reference(NAME)`` to $NAME's value."""
    return {
        "Authorization": f"Bearer {reference(TOKEN_ENV)}",
        "X-Session-Key": reference(SESSION_ENV),
        "X-Agent-Id": reference(AGENT_ENV),
    }


# --- the documented shapes ----------------------------------------------------------------


def test_claude_code_mcp_config_with_env_expansion() -> None:
    # https://code.claude.com/docs/en/mcp — "Environment variable expansion in .mcp.json":
    # ${VAR} is expanded in url and headers; HTTP servers are {"type": "http", "url", "headers"}.
    # https://code.claude.com/docs/en/cli-reference — --mcp-config, --strict-mcp-config.
    # https://code.claude.com/docs/en/iam — the permission rule "mcp__<server>" allows every
    # tool of that server.
    config = render("claude", URL, TOKEN, headers=HEADERS)
    assert json.loads(config.text) == {
        "mcpServers": {
            "loopback": {"type": "http", "url": URL, "headers": refs(lambda name: "${" + name + "}")}
        }
    }
    assert dict(config.env) == ENV_WITH_HEADERS
    assert config.holds_secret is False and TOKEN not in config.text
    assert config.config_env is None
    assert config.filename == "mcp.json"
    assert config.args == (
        "--mcp-config",
        MCP_CONFIG_PLACEHOLDER,
        "--allowedTools",
        "mcp__loopback",
        "--strict-mcp-config",
    )
    # Both flags before it take several values (anthropics/claude-code#16122, #25978):
    # a boolean flag last keeps a prompt appended by the caller out of them.
    assert config.args[-1] == "--strict-mcp-config"
    assert config.args_for("/tmp/run/mcp.json") == (
        "--mcp-config",
        "/tmp/run/mcp.json",
        "--allowedTools",
        "mcp__loopback",
        "--strict-mcp-config",
    )


def test_codex_config_toml_and_c_overrides() -> None:
    # https://github.com/openai/codex/blob/main/docs/config.md — "Streamable HTTP":
    # url, bearer_token_env_var, http_headers (literal), env_http_headers (header -> env var).
    # https://developers.openai.com/codex/config-reference —
    # mcp_servers.<id>.default_tools_approval_mode = auto | prompt | writes | approve
    # (codex-rs/config/src/mcp_types.rs: RawMcpServerConfig.default_tools_approval_mode).
    # docs/config.md "-c/--config key=value": the value is parsed as TOML.
    config = render("codex", URL, TOKEN, headers=HEADERS)
    expected_server = {
        "url": URL,
        "bearer_token_env_var": TOKEN_ENV,
        "default_tools_approval_mode": "approve",
        "env_http_headers": {"X-Session-Key": SESSION_ENV, "X-Agent-Id": AGENT_ENV},
    }
    assert tomllib.loads(config.text) == {"mcp_servers": {"loopback": expected_server}}
    assert dict(config.env) == ENV_WITH_HEADERS
    assert config.holds_secret is False and TOKEN not in config.text
    assert config.filename == "config.toml" and config.config_env is None

    # Every -c override is "mcp_servers.loopback.KEY=<TOML value>", and together they
    # rebuild exactly the table of the file.
    assert config.args[0::2] == ("-c",) * 4
    overrides: dict[str, Any] = {}
    for override in config.args[1::2]:
        key, _, value = override.partition("=")
        assert key.startswith("mcp_servers.loopback.")
        overrides[key.removeprefix("mcp_servers.loopback.")] = tomllib.loads(f"v = {value}")["v"]
    assert overrides == expected_server
    assert all(TOKEN not in arg for arg in config.args)  # never in `ps`
    assert MCP_CONFIG_PLACEHOLDER not in config.args


def test_codex_without_extra_headers_has_no_env_http_headers() -> None:
    config = render("codex", URL, TOKEN)
    assert "env_http_headers" not in tomllib.loads(config.text)["mcp_servers"]["loopback"]
    assert dict(config.env) == {TOKEN_ENV: TOKEN}
    assert len(config.args) == 6


def test_gemini_settings_through_system_settings_path() -> None:
    # https://github.com/google-gemini/gemini-cli/blob/main/docs/tools/mcp-server.md —
    # mcpServers.<name>: httpUrl (Streamable HTTP), headers, trust ("bypasses all tool
    # call confirmations for this server").
    # https://github.com/google-gemini/gemini-cli/blob/main/docs/get-started/configuration.md —
    # string values in settings.json may reference $VAR_NAME or ${VAR_NAME}; the system
    # settings file is found through GEMINI_CLI_SYSTEM_SETTINGS_PATH (packages/cli/src/config/
    # settings.ts: getSystemSettingsPath; loadSettings resolves variables in that file too).
    config = render("gemini", URL, TOKEN, headers=HEADERS)
    assert json.loads(config.text) == {
        "mcpServers": {
            "loopback": {
                "httpUrl": URL,
                "headers": refs(lambda name: "${" + name + "}"),
                "trust": True,
            }
        }
    }
    assert dict(config.env) == ENV_WITH_HEADERS
    assert config.holds_secret is False and TOKEN not in config.text
    assert config.config_env == "GEMINI_CLI_SYSTEM_SETTINGS_PATH"
    assert config.filename == "settings.json" and config.args == ()
    assert config.env_for("/tmp/run/settings.json") == {
        **ENV_WITH_HEADERS,
        "GEMINI_CLI_SYSTEM_SETTINGS_PATH": "/tmp/run/settings.json",
    }


def test_cursor_mcp_json() -> None:
    # https://cursor.com/docs/context/mcp — remote servers {"url", "headers"} under
    # mcpServers; "Config interpolation": ${env:NAME} in command, args, env, url, headers.
    config = render("cursor", URL, TOKEN, headers=HEADERS)
    assert json.loads(config.text) == {
        "mcpServers": {"loopback": {"url": URL, "headers": refs(lambda name: "${env:" + name + "}")}}
    }
    assert dict(config.env) == ENV_WITH_HEADERS
    assert config.holds_secret is False and TOKEN not in config.text
    assert (config.filename, config.args, config.config_env) == ("mcp.json", (), None)


def test_vscode_mcp_json() -> None:
    # https://code.visualstudio.com/docs/copilot/reference/mcp-configuration — "servers",
    # HTTP servers {"type": "http", "url", "headers"}; predefined variables are allowed,
    # and https://code.visualstudio.com/docs/reference/variables-reference gives ${env:Name}.
    config = render("vscode", URL, TOKEN, headers=HEADERS)
    assert json.loads(config.text) == {
        "servers": {
            "loopback": {"type": "http", "url": URL, "headers": refs(lambda name: "${env:" + name + "}")}
        }
    }
    assert dict(config.env) == ENV_WITH_HEADERS
    assert config.holds_secret is False and TOKEN not in config.text
    assert (config.filename, config.args, config.config_env) == ("mcp.json", (), None)


def test_windsurf_mcp_config_json() -> None:
    # https://docs.windsurf.com/windsurf/cascade/mcp — "Remote HTTP MCPs" use serverUrl;
    # "Config Interpolation": ${env:NAME} in command, args, env, serverUrl, url, headers.
    config = render("windsurf", URL, TOKEN, headers=HEADERS)
    assert json.loads(config.text) == {
        "mcpServers": {
            "loopback": {"serverUrl": URL, "headers": refs(lambda name: "${env:" + name + "}")}
        }
    }
    assert dict(config.env) == ENV_WITH_HEADERS
    assert config.holds_secret is False and TOKEN not in config.text
    assert (config.filename, config.args, config.config_env) == ("mcp_config.json", (), None)


def test_zed_context_servers_hold_the_token() -> None:
    # https://zed.dev/docs/ai/mcp — context_servers.<name> = {"url", "headers"} for a
    # remote server (crates/settings: ContextServerSettingsContent::Http); Zed's
    # settings.json has no variable expansion, so the token is written as is.
    config = render("zed", URL, TOKEN, headers=HEADERS)
    assert json.loads(config.text) == {"context_servers": {"loopback": {"url": URL, "headers": LITERAL_HEADERS}}}
    assert config.holds_secret is True and TOKEN in config.text
    assert dict(config.env) == {}
    assert (config.filename, config.args, config.config_env) == ("settings.json", (), None)


def test_opencode_json_through_opencode_config() -> None:
    # https://opencode.ai/docs/mcp-servers/ — "Remote": {"type": "remote", "url",
    # "enabled", "headers"}; "Disabling OAuth": "oauth": false for API-key servers,
    # with "Bearer {env:MY_API_KEY}" in headers.
    # https://opencode.ai/docs/config/ — OPENCODE_CONFIG names a custom config file;
    # {env:VARIABLE_NAME} substitution.
    config = render("opencode", URL, TOKEN, headers=HEADERS)
    assert json.loads(config.text) == {
        "$schema": "https://opencode.ai/config.json",
        "mcp": {
            "loopback": {
                "type": "remote",
                "url": URL,
                "enabled": True,
                "oauth": False,
                "headers": refs(lambda name: "{env:" + name + "}"),
            }
        },
    }
    assert dict(config.env) == ENV_WITH_HEADERS
    assert config.holds_secret is False and TOKEN not in config.text
    assert (config.filename, config.args, config.config_env) == ("opencode.json", (), "OPENCODE_CONFIG")


def test_generic_url_and_headers() -> None:
    # https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#streamable-http —
    # one endpoint URL; the credential in the Authorization header.
    config = render("generic", URL, TOKEN, headers=HEADERS)
    assert json.loads(config.text) == {"url": URL, "headers": LITERAL_HEADERS}
    assert config.holds_secret is True
    assert dict(config.env) == {} and config.args == () and config.config_env is None


def test_claude_desktop_entry_starts_the_stdio_bridge() -> None:
    # https://modelcontextprotocol.io/docs/develop/connect-local-servers — claude_desktop_config.json:
    # {"mcpServers": {NAME: {"command", "args", "env"}}}; Claude Desktop launches only stdio
    # servers and expands no variables in "env", so the token is written there literally.
    config = render("claude-desktop", URL, TOKEN, headers=HEADERS, python="/usr/bin/python3")
    assert json.loads(config.text) == {
        "mcpServers": {
            "loopback": {
                "command": "/usr/bin/python3",
                "args": ["-m", "loopback", "stdio", "--url", URL,
                         "--header", "X-Session-Key", "--header", "X-Agent-Id"],
                "env": ENV_WITH_HEADERS,
            }
        }
    }
    assert config.holds_secret is True  # write it 0600
    assert config.filename == "claude_desktop_config.json"
    assert dict(config.env) == {} and config.args == () and config.config_env is None
    # The generic stdio entry has the same shape; a PYTHONPATH joins env when given.
    generic = render("stdio", URL, TOKEN, token_env="MY_TOKEN", python="py", python_path="/src")
    assert json.loads(generic.text)["mcpServers"]["loopback"] == {
        "command": "py",
        "args": ["-m", "loopback", "stdio", "--url", URL, "--token-env", "MY_TOKEN"],
        "env": {"MY_TOKEN": TOKEN, "PYTHONPATH": "/src"},
    }


def test_stdio_discovery_entry_holds_no_secret() -> None:
    config = clients.render_stdio_discovery("claude-desktop", runtime_dir="/run/user/1000/loopback",
                                            name="host-tools", python="/usr/bin/python3")
    assert json.loads(config.text) == {"mcpServers": {"host-tools": {
        "command": "/usr/bin/python3", "args": ["-m", "loopback", "stdio"],
        "env": {"LOOPBACK_RUNTIME_DIR": "/run/user/1000/loopback"}}}}
    assert config.holds_secret is False and dict(config.env) == {}
    with pytest.raises(ValueError, match="not a stdio format"):
        clients.render_stdio_discovery("claude", runtime_dir="/x")
    with pytest.raises(ValueError, match="name"):
        clients.render_stdio_discovery("stdio", runtime_dir="/x", name="a b")


# --- properties of every format -------------------------------------------------------------

EXPANDING = ("claude", "codex", "gemini", "cursor", "vscode", "windsurf", "opencode")
LITERAL = ("zed", "generic")
STDIO = ("claude-desktop", "stdio")  # the file starts the stdio bridge; its env block holds the token


def test_formats_are_the_eleven_clients() -> None:
    assert set(FORMATS) == set(EXPANDING) | set(LITERAL) | set(STDIO)
    assert len(FORMATS) == 11
    assert clients.STDIO_FORMATS == STDIO


def parsed(config: ClientConfig) -> Any:
    return tomllib.loads(config.text) if config.filename.endswith(".toml") else json.loads(config.text)


@pytest.mark.parametrize("format", FORMATS)
def test_text_parses_and_ends_with_a_newline(format: str) -> None:
    config = render(format, URL, TOKEN, headers=HEADERS)
    assert config.format == format
    assert config.text.endswith("\n")
    assert parsed(config)


@pytest.mark.parametrize("format", EXPANDING)
def test_token_and_header_values_travel_in_env_where_the_client_expands_it(format: str) -> None:
    config = render(format, URL, TOKEN, headers=HEADERS)
    assert config.holds_secret is False
    for secret in (TOKEN, "session-42", "agent/7"):
        assert secret not in config.text
        assert all(secret not in arg for arg in config.args)
    assert dict(config.env) == ENV_WITH_HEADERS


@pytest.mark.parametrize("format", LITERAL)
def test_token_is_in_the_file_where_the_client_cannot_expand(format: str) -> None:
    config = render(format, URL, TOKEN, headers=HEADERS)
    assert config.holds_secret is True
    assert f"Bearer {TOKEN}" in config.text
    assert "session-42" in config.text and "agent/7" in config.text


@pytest.mark.parametrize("format", FORMATS)
def test_extra_headers_reach_every_format(format: str) -> None:
    config = render(format, URL, TOKEN, headers=HEADERS)
    for header in HEADERS:
        assert f'"{header}"' in config.text  # a JSON key, or a quoted TOML key


@pytest.mark.parametrize("format", FORMATS)
def test_custom_name_and_token_env(format: str) -> None:
    config = render(format, URL, TOKEN, name="host-tools", token_env="MY_AGENT_TOKEN")
    if format != "generic":  # the generic form is only a URL and headers
        assert "host-tools" in config.text
    if format in EXPANDING:
        assert dict(config.env) == {"MY_AGENT_TOKEN": TOKEN}
        assert "MY_AGENT_TOKEN" in config.text + " ".join(config.args)
        assert TOKEN_ENV not in config.text
    if format == "claude":
        assert "mcp__host-tools" in config.args


@pytest.mark.parametrize("format", ("claude", "gemini", "cursor", "vscode", "windsurf", "opencode"))
def test_inline_secrets_writes_literals(format: str) -> None:
    config = render(format, URL, TOKEN, headers=HEADERS, inline_secrets=True)
    assert config.holds_secret is True
    assert dict(config.env) == {}
    assert f"Bearer {TOKEN}" in config.text and "session-42" in config.text


def test_inline_secrets_refused_for_codex() -> None:
    with pytest.raises(ValueError, match="codex"):
        render("codex", URL, TOKEN, inline_secrets=True)


def test_inline_value_that_the_client_would_expand_is_refused() -> None:
    with pytest.raises(ValueError, match="expanded"):
        render("cursor", URL, TOKEN, headers={"X-Key": "a${env:HOME}"}, inline_secrets=True)
    # A client that expands nothing takes it as is.
    config = render("zed", URL, TOKEN, headers={"X-Key": "a${env:HOME}"})
    assert json.loads(config.text)["context_servers"]["loopback"]["headers"]["X-Key"] == "a${env:HOME}"


def test_env_is_read_only() -> None:
    config = render("claude", URL, TOKEN)
    with pytest.raises(TypeError):
        config.env[TOKEN_ENV] = "other"  # type: ignore[index]


@pytest.mark.parametrize("format", FORMATS)
def test_repr_never_shows_the_token(format: str) -> None:
    assert TOKEN not in repr(render(format, URL, TOKEN, headers=HEADERS))


def test_args_and_env_helpers_without_placeholders() -> None:
    config = render("cursor", URL, TOKEN)
    assert config.args_for("/x") == ()
    assert config.env_for("/x") == {TOKEN_ENV: TOKEN}


# --- errors and injection ---------------------------------------------------------------------


def test_unknown_format_lists_the_formats() -> None:
    with pytest.raises(ValueError) as raised:
        render("emacs", URL, TOKEN)
    for format in FORMATS:
        assert format in str(raised.value)
    with pytest.raises(ValueError, match="claude, codex"):
        describe("emacs")


@pytest.mark.parametrize("format", FORMATS)
def test_describe_is_one_line(format: str) -> None:
    text = describe(format)
    assert text and "\n" not in text


@pytest.mark.parametrize("bad", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb", "\u2028", " lead", "trail\t", ""])
@pytest.mark.parametrize("format", FORMATS)
def test_header_value_injection_is_refused(format: str, bad: str) -> None:
    with pytest.raises(ValueError):
        render(format, URL, TOKEN, headers={"X-Session-Key": bad})


@pytest.mark.parametrize("bad", ["X Session", "X-Session:", "X\nY", "", "Ä", "X(1)", 'X"'])
def test_header_name_must_be_an_rfc9110_token(bad: str) -> None:
    with pytest.raises(ValueError, match="RFC 9110"):
        render("claude", URL, TOKEN, headers={bad: "v"})


@pytest.mark.parametrize("reserved", ["Authorization", "authorization", "Host", "Content-Length", "Mcp-Session-Id"])
def test_reserved_headers_are_refused(reserved: str) -> None:
    with pytest.raises(ValueError, match="set by the client"):
        render("generic", URL, TOKEN, headers={reserved: "v"})


def test_headers_equal_ignoring_case_are_refused() -> None:
    with pytest.raises(ValueError, match="repeats"):
        render("generic", URL, TOKEN, headers={"X-A": "1", "x-a": "2"})


def test_headers_sharing_an_env_variable_are_refused() -> None:
    with pytest.raises(ValueError, match="share the variable"):
        render("claude", URL, TOKEN, headers={"X-A": "1", "X_A": "2"})
    with pytest.raises(ValueError, match="share the variable"):
        render("claude", URL, TOKEN, headers={"T": "1"}, token_env=HEADER_ENV_PREFIX + "T")


@pytest.mark.parametrize(
    "bad",
    ["", "a.b", "a b", "a/b", "-lead", "ä", "x" * 65, 'a"b', "a\nb"],
)
def test_name_must_be_config_key_safe(bad: str) -> None:
    with pytest.raises(ValueError, match="name"):
        render("codex", URL, TOKEN, name=bad)


@pytest.mark.parametrize("bad", ["", "1ABC", "A-B", "A B", "A\nB"])
def test_token_env_must_be_an_env_name(bad: str) -> None:
    with pytest.raises(ValueError, match="token_env"):
        render("claude", URL, TOKEN, token_env=bad)


@pytest.mark.parametrize("bad", ["", "tok en", "tok\r\nX-Evil: 1", "a$b", "{env:X}", "tök"])
def test_token_must_be_token68(bad: str) -> None:
    with pytest.raises(ValueError, match="token"):
        render("generic", URL, bad)


@pytest.mark.parametrize(
    "bad",
    [
        "127.0.0.1:8765/mcp",
        "ftp://127.0.0.1/mcp",
        "http:///mcp",
        "http://127.0.0.1:8765/mcp\r\nX: 1",
        "http://127.0.0.1:8765/m cp",
        'http://127.0.0.1:8765/"mcp',
        "http://127.0.0.1:8765/${HOME}",
        "http://127.0.0.1:8765/{env:HOME}",
    ],
)
def test_url_must_be_a_plain_http_url(bad: str) -> None:
    with pytest.raises(ValueError, match="url"):
        render("claude", bad, TOKEN)


def test_ipv6_loopback_url_is_accepted() -> None:
    config = render("codex", "http://[::1]:8765/mcp", TOKEN)
    assert tomllib.loads(config.text)["mcp_servers"]["loopback"]["url"] == "http://[::1]:8765/mcp"


def test_gemini_refuses_underscore_names_and_dollar_values() -> None:
    # docs/tools/mcp-server.md warns against "_" in server names; Gemini expands
    # headers a second time when it connects.
    with pytest.raises(ValueError, match="gemini"):
        render("gemini", URL, TOKEN, name="host_tools")
    with pytest.raises(ValueError, match="gemini"):
        render("gemini", URL, TOKEN, headers={"X-Key": "a$b"})
    assert render("claude", URL, TOKEN, name="host_tools").args[3] == "mcp__host_tools"


# --- quoting ------------------------------------------------------------------------------

ODD_HEADER_NAME = "X-We!rd#$%&'*+.^_`|~"
ODD_VALUE = 'q"uote \\back\tslash é ÿ {x} $y'


def test_odd_characters_round_trip_through_toml() -> None:
    config = render("codex", URL, TOKEN, headers={ODD_HEADER_NAME: "v"})
    server = tomllib.loads(config.text)["mcp_servers"]["loopback"]
    env_name = server["env_http_headers"][ODD_HEADER_NAME]
    assert re.fullmatch(r"[A-Z0-9_]+", env_name)
    assert config.env[env_name] == "v"
    value = config.args[-1].partition("=")[2]  # the env_http_headers override
    assert tomllib.loads(f"v = {value}")["v"] == {ODD_HEADER_NAME: env_name}


@pytest.mark.parametrize(
    "text",
    ['', 'plain', 'q"uote', "back\\slash", "tab\tnl\ncr\rff\fbs\b", "nul\x00 us\x1f del\x7f", "é ÿ 中 😀", '\\u0041'],
)
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"v = {clients._toml_string(text)}")["v"] == text


@pytest.mark.parametrize("format", LITERAL)
def test_odd_characters_round_trip_through_json(format: str) -> None:
    config = render(format, URL, TOKEN, headers={ODD_HEADER_NAME: ODD_VALUE})
    document = json.loads(config.text)
    headers = document["headers"] if format == "generic" else document["context_servers"]["loopback"]["headers"]
    assert headers[ODD_HEADER_NAME] == ODD_VALUE


@pytest.mark.parametrize("format", ("claude", "cursor", "vscode", "windsurf", "opencode"))
def test_odd_values_travel_unchanged_in_env(format: str) -> None:
    config = render(format, URL, TOKEN, headers={ODD_HEADER_NAME: ODD_VALUE})
    assert ODD_VALUE not in config.text
    assert ODD_VALUE in config.env.values()
    assert json.loads(config.text)


def test_opencode_env_for_adds_the_config_path() -> None:
    config = render("opencode", URL, TOKEN)
    assert config.env_for("/tmp/oc.json") == {TOKEN_ENV: TOKEN, "OPENCODE_CONFIG": "/tmp/oc.json"}
    assert dict(config.env) == {TOKEN_ENV: TOKEN}
